"""Body, face and hand keypoints: the types, OpenPose readers, EDN's label-map renderer and pose normalisation."""
