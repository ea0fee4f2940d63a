"""Several results directories read as one: the leaderboard of several runs, each row naming the run it came from.

`load_results(dirs, allow_mixed=False)` is the one entry point the reports use (tables, HTML, plots, compare).
It returns a `MergedResults`, which has the interface of `bench.results.Results`, so every renderer takes
either:

    root                 Path of the first directory (roots: all of them, in the order given)
    manifest             a merged manifest: the first run's, with run.methods / run.method_order /
                         run.metric_order / run.metrics covering every run (method labels as below), plus
                         manifest["runs"]: [{"run": label, "root": str, "manifest": that run's own manifest}]
    frames(), videos(), aggregates(), comparisons()
                         the tables of every run concatenated, each with an extra column `run` (the run label);
                         comparisons are recomputed over the merged per-video rows when the runs share store,
                         split and protocol (paired over the videos both methods scored), otherwise (allow_mixed)
                         only the pairs within one run are kept
    methods, metrics     labels in run order (first run's methods first)
    leaderboard(by)      as Results.leaderboard, rows from every run (column `run` included)
    sample_frames(method, video_id), sample_videos()
                         sample PNGs, looked up in the run the method label belongs to
    runs                 list of RunInfo(label, root, manifest)
    run_of(method)       the run label of a method label
    coverage()           bench.results.Coverage of the test list or None (see bench.results.coverage)
    mixed                True when allow_mixed merged runs whose store/split/protocol differ

Method labels: a label that appears in one run only is kept as is; a label that appears in several runs becomes
`label@run` in every one of them (e.g. `fomm@r1`, `fomm@r2`), so no two rows share a label. Run labels are the
directory names, made unique by prefixing parent folders when two directories share a name.

Merging refuses (one-line AnimbenchError naming the differing field, the two values and both directories)
when the runs differ in store fingerprint (`run.store.fingerprint`), split (`run.store.split`), protocol
(`run.protocol.name`) or protocol variant (`run.protocol.variant`): their numbers are not comparable. With
allow_mixed=True they merge anyway and `mixed` is True; the tables then show the run column and the footnotes
name each run's store, split and protocol. A single directory gives a MergedResults of one run (labels
unchanged), so callers need only this one path.
"""
