"""Consistency and stability of concepts (SPEC 5.4), both protocols.

* `common`: protocol choice by the dataset's annotations, noise parameters, concept batches;
* `keypoints`: protocol (a), keypoints in box crops (Huang et al., ICCV 2023; CUB);
* `partmasks`: protocol (b), dilated part masks (ProtoFM / ProtoS-ViT; synthbirds, funnybirds);
* `register`: the `@register_metric` entries `consistency` and `stability`.
"""
