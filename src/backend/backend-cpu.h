// backend-cpu.h: the CPU backend (backend-cpu.c): the kernel tables of
// src/kernels on a thread pool, memory = host memory.
#ifndef QT_BACKEND_CPU_H
#define QT_BACKEND_CPU_H

#include "backend/backend.h"
#include "kernels/kernels.h"

// On pool (borrowed, may be NULL: one thread) with the best kernel table for
// this CPU, precision QT_PREC_FAST (inference numerics). Never NULL.
qt_backend *qt_backend_cpu_init(qt_pool *pool);
// The backend's kernel context (table, pool, precision, stop flag), or NULL
// when be is not a CPU backend. Training sets prec; tests pick tables.
qt_kctx *qt_backend_cpu_kctx(qt_backend *be);

#endif
