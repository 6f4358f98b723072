// dist.h: data-parallel communication between training processes, over MPI
// (Open MPI from Debian; the design is llm.c's multi-node training: every
// rank holds the whole model, takes its slice of each global batch, and the
// ranks sum their adapter gradients with an all-reduce every optimizer step).
//
// One process-wide communicator (MPI's own state is process-wide too). MPI is
// used only when qtune was built with it (make MPI=1, the default when Open
// MPI's headers are installed) AND the process was started by mpirun; any
// other process is rank 0 of 1 and every call below is a no-op, so training
// without mpirun behaves exactly as before.
//
// Failure policy: a collective that fails (a peer died, the network went
// away) or does not complete within the timeout logs one clear error naming
// this rank and returns QT_ERR; the caller stops, and qt_dist_abort ends every
// other rank through the launcher, so no rank ever waits forever.
#ifndef QT_DIST_H
#define QT_DIST_H

#include <stdbool.h>
#include <stddef.h>

// Starts MPI when launched by mpirun (reads OMPI_COMM_WORLD_SIZE / PMI_SIZE /
// PMIX_RANK). QT_ERR (logged) if launched with several ranks by a qtune built
// without MPI, or if MPI fails to start. Idempotent.
int qt_dist_init(void);
// Ends MPI (after a successful run). No-op when MPI is not in use.
void qt_dist_finalize(void);
// Ends the whole job: logs `why` with this rank's number and aborts every
// rank (MPI_Abort). Without MPI: returns (the caller exits on its own).
void qt_dist_abort(const char *why);

// The sentence a rank prints when mpirun stops it because another rank failed
// (SIGTERM), e.g. where the last checkpoint is. No-op without MPI.
void qt_dist_set_stop_note(const char *note);

int qt_dist_rank(void);       // 0 when not distributed
int qt_dist_size(void);       // 1 when not distributed
int qt_dist_local_size(void); // ranks on this machine (1 when not distributed)
bool qt_dist_compiled(void);  // built with MPI support

// Seconds a collective may wait for the slowest rank before the job is
// declared broken (default 600: a checkpoint or an evaluation on a slow disk
// can keep rank 0 away for a while).
void qt_dist_set_timeout(double seconds);

// In-place element-wise sums over all ranks. QT_ERR (logged) on failure.
int qt_dist_sum_f32(float *buf, size_t n);
int qt_dist_sum_f64(double *buf, size_t n);
// In-place maximum over all ranks.
int qt_dist_max_f64(double *buf, size_t n);
// Copies rank root's buf (bytes) to every rank.
int qt_dist_bcast(void *buf, size_t bytes, int root);

// Bucketed gradient all-reduce, overlapped with the backward pass: start a
// sum of buf[0..n) (buf must stay untouched until qt_dist_wait), call
// qt_dist_progress now and then (MPI moves non-blocking collectives only
// inside MPI calls), and qt_dist_wait before reading any of the buffers.
int qt_dist_isum_f32(float *buf, size_t n);
void qt_dist_progress(void);
int qt_dist_wait(void);

#endif
