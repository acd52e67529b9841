"""ProtoFM (SPEC 3.4): prototypes on a frozen foundation model with an EMA student-teacher head.

One concept per module: `head` (projector, prototypes, smoothing, classifier),
`teacher` (EMA teacher and momentum schedule), `align` (RoIAlign onto the
teacher's grid), `losses` (the five losses), `usage` (prototype-usage
statistics, the collapse diagnostic), `method` (the registered `protofm`).
"""
