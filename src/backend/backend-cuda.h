// backend-cuda.h: the CUDA backend (backend-cuda.c on the kernels of
// cuda-*.cu), compiled in with `make CUDA=1`. backend.c reaches it through
// qt_backend_init("cuda" | "cuda:N" | "auto"); docs/cuda.md says what runs
// on the GPU.
#ifndef QT_BACKEND_CUDA_H
#define QT_BACKEND_CUDA_H

#include <stdbool.h>

#include "backend/backend.h"

// GPU `device`; products in bf16 with float32 accumulation, or all in
// float32 when the environment sets QT_CUDA_FP32=1. NULL (logged: no GPU,
// driver too old, ...) when the GPU cannot be used.
qt_backend *qt_backend_cuda_init(int device);
// The same with the precision chosen by the caller (tests).
qt_backend *qt_backend_cuda_init_prec(int device, bool fp32);
// Usable GPUs; 0 (quietly) without a GPU or a fitting driver.
int qt_cuda_device_count(void);
// Prints each GPU (name, compute capability, memory) and the CUDA versions,
// or why there are none (QT_ERR).
int qt_cuda_list_devices(void);

#endif
