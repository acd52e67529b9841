"""The FunnyBirds explainability suite (SPEC 5.2) on part-annotated datasets with interventions.

One concept per module:

* `masks`: per test image and unit (part slot or background object), its part-map mask dilated by a
  5x5 max-pool and counted per token cell of the attribution grid (exact nearest upsampling);
* `importance`: part importance of attribution maps and the "important" sets per threshold;
* `interventions`: the model's logits on the cached `InterventionView`, as [N, 2^P, C] part subsets
  (indexed by the keep bitmask) and [N, O, C] single background-object removals; the 5 % relevance rule;
* `classes`: the class structure (minimal sufficient part sets, agreement masks, TS candidate pairs);
* `completeness`: CSDC, PC, DC, D over thresholds and the threshold choice;
* `correctness`: single deletion (SD, Spearman);
* `contrastivity`: target sensitivity (TS);
* `background`: background independence (BI);
* `suite`: the memoised family computation that every registered metric reads, and the aggregates;
* `register`: the `@register_metric` entries.
"""
