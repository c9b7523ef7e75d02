/* Run directories: where a run's checkpoints and metrics live.
 *
 * A run directory (checkpoint.dir) holds one file per saved step,
 * DIR/step_00000100.h5 (at least 8 digits, so names sort by step), written
 * atomically by io/checkpoint.h, plus by default the metrics file
 * (log.jsonl = DIR/metrics.jsonl). The newest step file is the run's current
 * state; checkpoint.keep_last says how many are kept. Temporary files
 * ("step_*.h5.tmp-*", left by a crash mid-write) and any other file are never
 * taken for a checkpoint and never deleted.
 *
 * The checks below run before a run's first step (lb_run_preflight), so a
 * directory that cannot be written is found before any training time is
 * spent, not at the first save. */
#ifndef LOWBIT_TRAINER_RUNDIR_H
#define LOWBIT_TRAINER_RUNDIR_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* Creates DIR and its parents as needed and checks that a file can be
 * created in it (a probe named like a checkpoint's temporary file is created
 * and removed). LB_EIO naming the path and the reason: a component that is a
 * file, a read-only directory, a name too long, ... */
lb_status lb_rundir_prepare(const char *dir);

/* Checks that `bytes` fit in DIR before a checkpoint is written: allocates
 * them for a probe file (fallocate) and removes it. LB_EIO naming the bytes,
 * DIR and the reason (No space left on device; File too large under
 * RLIMIT_FSIZE). A file system without fallocate passes. Why: libhdf5 1.10
 * cannot close a file whose writes failed, and crashes at exit
 * (docs/reliability.md), so a full disk is best found before HDF5 writes. */
lb_status lb_rundir_reserve(const char *dir, uint64_t bytes);

/* Checks that the file at PATH can be written without touching it: creates
 * its directory as needed; an existing file is opened for appending and
 * closed, a missing one is created and removed again. LB_EIO as above. */
lb_status lb_rundir_check_file(const char *path);

/* DIR/step_00000100.h5. LB_EINVAL when step < 0 or the path does not fit in
 * `size`. */
lb_status lb_rundir_step_path(const char *dir, int64_t step, char *buf, size_t size);

/* The step file of DIR with the highest step (by number, not by name).
 * LB_EIO when DIR cannot be read, LB_EINVAL when it holds no step file. */
lb_status lb_rundir_latest(const char *dir, char *buf, size_t size);

/* Deletes all but the newest `keep_last` step files of DIR; keep_last <= 0
 * keeps them all. Call it after a successful save, so that the newest kept
 * file is the one just written. Temporary step files of processes that no
 * longer run on this machine (saves killed before their rename) go too. */
lb_status lb_rundir_prune(const char *dir, int keep_last);

/* A checkpoint named by the user: PATH itself when it is a file, the newest
 * step file when it is a run directory. LB_EIO when PATH does not exist. */
lb_status lb_rundir_resolve(const char *path, char *buf, size_t size);

#endif
