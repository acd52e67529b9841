"""DINO-QPM (SPEC 3.3).

Stage 2, the feature selection / class assignment program, lives in
`qp_problem` (building A, R, R~ and tau from training statistics),
`qp_solve` (the MILP through cvxpy, HiGHS by default) and `qp_greedy`
(the solver-free greedy + local search, also the MILP's warm start).
"""
