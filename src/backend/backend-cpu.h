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
// The element type of the KV cache kv_init makes on a CPU backend whose
// kernel context is kc, for a model whose projections are wtype (F16 where
// kc's products round the activations, else F32: backend-cpu.c), and the
// cache's bytes.
qt_type qt_backend_cpu_kv_type(const qt_kctx *kc, qt_type wtype);
size_t qt_backend_cpu_kv_bytes(const qt_kctx *kc, int n_layer, int n_slots, int n_ctx, int NKV, int HS,
                               qt_type wtype);

#endif
