"""Executors: where jobs run.

* in-process (the default, `xbench.runner.Runner.run`);
* `local_pool.run_pool`: `--workers N` independent jobs in N processes on this machine (one per GPU);
* `slurm.run_slurm`: `--executor slurm`, feature extraction then one Slurm array task per job (submitit);
* `tasks`: the module-level functions a worker or a Slurm task runs (importable on every node);
* `distributed`: torch.distributed helpers (process groups over gloo / nccl, local spawning);
* `sharded_extract`: one feature-cache entry filled by N processes, identical to a one-process extraction;
* `ddp_fit`: heads trained with DistributedDataParallel (`--ddp N`) for methods with `supports_ddp`.

Every executor writes into the same results store: records are written atomically under the
store's `.lock`, jobs are claimed with per-job locks (`xbench.runner.job_lock`), and cache entries
are filled under per-entry locks, so executors can be mixed and rerun on the same folders.
"""
