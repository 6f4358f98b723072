// backend.c: choosing a backend by name (backend.h). The CUDA backend is
// compiled in with `make CUDA=1` (QT_CUDA defined); without it "cuda" is an
// error that says how to get it.
#include "backend/backend.h"

#include <stdlib.h>
#include <string.h>

#include "backend/backend-cpu.h"
#include "base/base.h"

#ifdef QT_CUDA
#include "backend/backend-cuda.h"
#endif

bool qt_backend_cuda_built(void) {
#ifdef QT_CUDA
    return true;
#else
    return false;
#endif
}

int qt_backend_cuda_list(void) {
#ifdef QT_CUDA
    return qt_cuda_list_devices();
#else
    qt_log_error("this qtune was built without CUDA (rebuild with `make CUDA=1` on a machine with nvcc)");
    return QT_ERR;
#endif
}

qt_backend *qt_backend_init(const char *name, qt_pool *pool) {
    if (!name || !strcmp(name, "cpu")) return qt_backend_cpu_init(pool);
    if (!strcmp(name, "auto")) {
#ifdef QT_CUDA
        if (qt_cuda_device_count() > 0) return qt_backend_cuda_init(0);
#endif
        return qt_backend_cpu_init(pool);
    }
    if (!strcmp(name, "cuda") || !strncmp(name, "cuda:", 5)) {
#ifdef QT_CUDA
        int dev = 0;
        if (name[4] == ':') {
            char *end;
            long d = strtol(name + 5, &end, 10);
            if (*end || d < 0 || d > 64) {
                qt_log_error("--device %s: expected cuda or cuda:N", name);
                return NULL;
            }
            dev = (int)d;
        }
        return qt_backend_cuda_init(dev);
#else
        qt_log_error("--device %s: this qtune was built without CUDA (rebuild with `make CUDA=1` where nvcc is installed)",
                     name);
        return NULL;
#endif
    }
    qt_log_error("unknown device '%s' (use cpu, cuda or auto)", name);
    return NULL;
}

void qt_backend_free(qt_backend *be) {
    if (be) be->ops->destroy(be);
}
