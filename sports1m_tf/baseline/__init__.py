"""The feature-histogram baseline: the first row of the paper's Table 1 (docs/design.md).

Dense local descriptors (HOG, hue-saturation colour, optical-flow orientation)
→ one k-means vocabulary per descriptor type → soft-assigned histograms per
spatial-pyramid cell (1×1 + 2×2), summed over every sampled frame of every clip
of a video, each normalised to sum 1 → one video vector → a Keras ReLU MLP.

Modules, lowest first: `descriptors` (frames → local descriptors), `vocabulary`
(k-means, soft assignment), `histograms` (descriptors → pyramid histograms and
the video vector), `encode` (one clip's work, run in worker processes),
`extract` (records → per-video vectors: parallel, cached, with progress),
`classifier` (the MLP and its search), `main` (`sports1m-baseline`).
Only `extract`, `classifier` and `main` import TensorFlow.
"""
