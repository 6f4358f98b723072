// dist.c: MPI data-parallel communication (see dist.h).
// Every collective is non-blocking underneath (MPI_Iallreduce / MPI_Ibcast)
// and completed by polling MPI_Testall with a deadline, so a dead or silent
// peer turns into an error message instead of a hang. MPI_COMM_WORLD gets
// MPI_ERRORS_RETURN so transport errors come back to us as codes.
// Deliberately not: sub-communicators, model/tensor parallelism, reductions
// in reduced precision (LoRA gradients are small; see docs/distributed.md).
#include "dist/dist.h"

#include <sched.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "base/base.h"

#ifdef QT_MPI
#include <mpi.h>
#endif

static int g_rank = 0, g_size = 1;
static double g_timeout = 600.0;

bool qt_dist_compiled(void) {
#ifdef QT_MPI
    return true;
#else
    return false;
#endif
}

int qt_dist_rank(void) { return g_rank; }
int qt_dist_size(void) { return g_size; }
int qt_dist_local_size(void) {
    const char *s = g_size > 1 ? getenv("OMPI_COMM_WORLD_LOCAL_SIZE") : NULL;
    int n = s ? atoi(s) : 1;
    return n > 0 ? n : 1;
}
void qt_dist_set_timeout(double seconds) { g_timeout = seconds > 0 ? seconds : 600.0; }

// Number of ranks the launcher announced: -1 when not started by a launcher,
// 0 when started by one that does not say how many.
static int launcher_size(void) {
    const char *s = getenv("OMPI_COMM_WORLD_SIZE");
    if (!s) s = getenv("PMI_SIZE");
    if (s) return atoi(s) > 0 ? atoi(s) : 0;
    if (getenv("PMIX_RANK") || getenv("PMI_RANK")) return 0;
    return -1;
}

#ifdef QT_MPI

static bool g_active;      // MPI_Init done and not finalized

#define MAX_PENDING 1024
static MPI_Request g_pending[MAX_PENDING];
static int g_n_pending;

static int mpi_fail(int code, const char *what) {
    char msg[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    MPI_Error_string(code, msg, &len);
    qt_log_error("%s failed: %s (a rank died or the network failed)", what, msg);
    return QT_ERR;
}

// Completes reqs[0..n) or gives up after the timeout. Spins (yielding) for
// the first 20 ms, where a healthy all-reduce of LoRA gradients ends, then
// sleeps between polls so a waiting rank leaves its core to the others.
static int wait_reqs(MPI_Request *reqs, int n, const char *what) {
    double t0 = qt_time_s();
    for (;;) {
        int done = 0;
        int rc = MPI_Testall(n, reqs, &done, MPI_STATUSES_IGNORE);
        if (rc != MPI_SUCCESS) return mpi_fail(rc, what);
        if (done) return QT_OK;
        double el = qt_time_s() - t0;
        if (el > g_timeout) {
            qt_log_error("%s: no answer from the other ranks for %.0f s (a rank died or the network failed; "
                         "--dist-timeout sets this limit)", what, el);
            return QT_ERR;
        }
        if (el < 0.02) {
            sched_yield();
        } else {
            struct timespec ts = { 0, el < 1.0 ? 100000 : 1000000 };
            nanosleep(&ts, NULL);
        }
    }
}

// Chunks of at most this many elements per MPI call (counts are int).
#define CHUNK ((size_t)1 << 28)

static int start_allreduce(void *buf, size_t n, MPI_Datatype type, size_t esize, MPI_Op op, const char *what) {
    for (size_t i = 0; i < n; i += CHUNK) {
        if (g_n_pending == MAX_PENDING) {
            int rc = wait_reqs(g_pending, g_n_pending, what);
            g_n_pending = 0;
            if (rc != QT_OK) return rc;
        }
        int cnt = (int)QT_MIN(CHUNK, n - i);
        int rc = MPI_Iallreduce(MPI_IN_PLACE, (char *)buf + i * esize, cnt, type, op, MPI_COMM_WORLD,
                                &g_pending[g_n_pending]);
        if (rc != MPI_SUCCESS) return mpi_fail(rc, what);
        g_n_pending++;
    }
    return QT_OK;
}

static int allreduce(void *buf, size_t n, MPI_Datatype type, size_t esize, MPI_Op op, const char *what) {
    if (!g_active || n == 0) return QT_OK;
    if (g_n_pending && qt_dist_wait() != QT_OK) return QT_ERR;
    if (start_allreduce(buf, n, type, esize, op, what) != QT_OK) return QT_ERR;
    int rc = wait_reqs(g_pending, g_n_pending, what);
    g_n_pending = 0;
    return rc;
}

int qt_dist_sum_f32(float *buf, size_t n) { return allreduce(buf, n, MPI_FLOAT, sizeof(float), MPI_SUM, "all-reduce"); }
int qt_dist_sum_f64(double *buf, size_t n) { return allreduce(buf, n, MPI_DOUBLE, sizeof(double), MPI_SUM, "all-reduce"); }
int qt_dist_max_f64(double *buf, size_t n) { return allreduce(buf, n, MPI_DOUBLE, sizeof(double), MPI_MAX, "all-reduce"); }

int qt_dist_bcast(void *buf, size_t bytes, int root) {
    if (!g_active || bytes == 0) return QT_OK;
    if (g_n_pending && qt_dist_wait() != QT_OK) return QT_ERR;
    for (size_t i = 0; i < bytes; i += CHUNK) {
        MPI_Request req;
        int rc = MPI_Ibcast((char *)buf + i, (int)QT_MIN(CHUNK, bytes - i), MPI_BYTE, root, MPI_COMM_WORLD, &req);
        if (rc != MPI_SUCCESS) return mpi_fail(rc, "broadcast");
        if (wait_reqs(&req, 1, "broadcast") != QT_OK) return QT_ERR;
    }
    return QT_OK;
}

int qt_dist_isum_f32(float *buf, size_t n) {
    if (!g_active || n == 0) return QT_OK;
    return start_allreduce(buf, n, MPI_FLOAT, sizeof(float), MPI_SUM, "gradient all-reduce");
}

void qt_dist_progress(void) {
    if (!g_active || !g_n_pending) return;
    int done = 0;
    MPI_Testall(g_n_pending, g_pending, &done, MPI_STATUSES_IGNORE);   // errors surface in qt_dist_wait
}

int qt_dist_wait(void) {
    if (!g_active || !g_n_pending) return QT_OK;
    int rc = wait_reqs(g_pending, g_n_pending, "gradient all-reduce");
    g_n_pending = 0;
    return rc;
}

// ---- being stopped by the launcher ----
// When one rank dies, mpirun sends SIGTERM to the others (then SIGKILL).
// They are then inside a step, so the only useful thing left is to say so and
// where the last complete checkpoint is: the message is formatted ahead of
// time into one of two buffers (the handler may only write(2) it).
static char g_note[2][768];
static atomic_int g_note_cur;

static void on_sigterm(int sig) {
    (void)sig;
    const char *m = g_note[atomic_load(&g_note_cur)];
    ssize_t w = write(2, m, strlen(m));
    (void)w;
    _exit(1);
}

void qt_dist_set_stop_note(const char *note) {
    if (!g_active) return;
    int next = 1 - atomic_load(&g_note_cur);
    snprintf(g_note[next], sizeof(g_note[next]),
             "error: rank %d of %d: stopped by mpirun (another rank failed, or the job was cancelled)%s%s\n",
             g_rank, g_size, note && *note ? "; " : "", note ? note : "");
    atomic_store(&g_note_cur, next);
}

int qt_dist_init(void) {
    if (g_active) return QT_OK;
    int n = launcher_size();
    if (n < 0 || n == 1) return QT_OK;   // not launched by mpirun, or one rank: plain process
    int provided = 0;
    // FUNNELED: only the main thread talks to MPI; the pool's workers never do.
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
        qt_log_error("MPI_Init failed");
        return QT_ERR;
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &g_size);
    g_active = true;
    qt_dist_set_stop_note(NULL);
    struct sigaction sa;
    memset(&sa, 0, sizeof(sa));
    sa.sa_handler = on_sigterm;
    sigaction(SIGTERM, &sa, NULL);
    return QT_OK;
}

void qt_dist_finalize(void) {
    if (!g_active) return;
    qt_dist_wait();
    MPI_Finalize();
    g_active = false;
    g_rank = 0;
    g_size = 1;
}

void qt_dist_abort(const char *why) {
    if (!g_active) return;
    qt_log_error("%s: stopping every rank", why);
    MPI_Abort(MPI_COMM_WORLD, 1);
}

#else   // built without MPI: one process, every collective is the identity

int qt_dist_init(void) {
    int n = launcher_size();
    if (n > 1) {
        qt_log_error("started by mpirun with %d ranks, but this qtune was built without MPI: install "
                     "libopenmpi-dev and rebuild (make MPI=1)", n);
        return QT_ERR;
    }
    return QT_OK;
}
void qt_dist_set_stop_note(const char *note) { (void)note; }
void qt_dist_finalize(void) {}
void qt_dist_abort(const char *why) { (void)why; }
int qt_dist_sum_f32(float *buf, size_t n) { (void)buf; (void)n; return QT_OK; }
int qt_dist_sum_f64(double *buf, size_t n) { (void)buf; (void)n; return QT_OK; }
int qt_dist_max_f64(double *buf, size_t n) { (void)buf; (void)n; return QT_OK; }
int qt_dist_bcast(void *buf, size_t bytes, int root) { (void)buf; (void)bytes; (void)root; return QT_OK; }
int qt_dist_isum_f32(float *buf, size_t n) { (void)buf; (void)n; return QT_OK; }
void qt_dist_progress(void) {}
int qt_dist_wait(void) { return QT_OK; }

#endif
