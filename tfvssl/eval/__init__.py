"""Downstream evaluation of pretrained encoders: export, probe, fine-tune, retrieve, plots.

- `workdir`: a pretraining run's method and encoder, rebuilt from `<workdir>/flags.txt` and
  its newest checkpoint.
- `exporting`: the SavedModel (three serving signatures) and `.keras` export of an encoder.
- `data`: the evaluation inputs: labelled training clips and the test-time views (windows or
  uniform clips, times crops) of every video.
- `protocol`: test-time aggregation (softmax or logit averaging) and the metrics.
- `classify`: linear/MLP probes and fine-tuning, one Keras `fit` loop for both.
- `retrieval`: nearest-neighbour video retrieval, R@k.
- `plots`: training curves, t-SNE, similarity histograms, retrieval grids, confusion matrices,
  Oops timelines.
- `oops`: unintentional action classification (MemDPC's predictive classifier, a classifier
  on any exported embedding) with the Oops protocol.
- `flags`: the command-line flags the evaluation entry points share.
"""
