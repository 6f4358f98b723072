# qtune build. One Makefile, objects in build/, dependency files, per-file ISA flags.
#   make            build build/qtune
#   make test       build and run every test (closes with "N passed, N failed")
#   make asan       the same tests under AddressSanitizer + UndefinedBehaviorSanitizer
#   make neon-test  cross-compile the kernel tests for arm64 and run them under qemu-user
#   make simde-test the x86 SIMD kernels built on SIMDe (no ISA flags) against the scalar reference
#   make bench      build the benchmark tools
#   make MPI=0      build without MPI (default: MPI=1 when Open MPI's mpicc is installed)
#   make CUDA=1     build with the CUDA backend (nvcc of CUDA_HOME, default /usr/local/cuda;
#                   CUDA_ARCHS="80 86 89 90" by default); `make CUDA=1 cuda-test` runs the GPU tests
ARCH    ?= $(shell uname -m)
CC      ?= cc
BUILD   ?= build
OPT     ?= -O2
DEBUG   ?= -g
CFLAGS_BASE = -std=c11 -D_GNU_SOURCE $(OPT) $(DEBUG) -fno-fast-math -ffp-contract=off -pthread \
  -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wpointer-arith \
  -Wno-unused-parameter -Isrc -MMD -MP
CFLAGS  += $(CFLAGS_BASE) $(EXTRA_CFLAGS)
LDLIBS  += -lm -pthread -lcjson -lutf8proc -lmicrohttpd -lyaml

# Data-parallel training (src/dist): on when Open MPI's compiler wrapper is
# there. Only src/dist/dist.c sees the MPI headers; everything links -lmpi.
MPICC ?= mpicc
MPI   ?= $(if $(shell command -v $(MPICC) 2>/dev/null),1,0)
ifeq ($(MPI),1)
  MPI_CFLAGS := -DQT_MPI $(shell $(MPICC) --showme:compile)
  LDLIBS     += $(shell $(MPICC) --showme:link)
endif

# CUDA backend (docs/cuda.md): the kernels (src/*/*.cu) through nvcc for
# CUDA_ARCHS, the C glue (src/*/*-cuda.c) and tests/test-cuda.c are built
# only with CUDA=1. Only backend.c looks at QT_CUDA (rebuilt when CUDA changes).
CUDA       ?= 0
CUDA_HOME  ?= /usr/local/cuda
NVCC       ?= $(CUDA_HOME)/bin/nvcc
CUDA_ARCHS ?= 80 86 89 90
NVCCFLAGS  ?= -O3
ifeq ($(CUDA),1)
  CU_SRC      := $(wildcard src/*/*.cu)
  CUDA_CFLAGS := -DQT_CUDA
  LDLIBS      += -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublas -lcublasLt -lcudart -lstdc++
else
  CUDA_SRC_EXCLUDE  := %-cuda.c
  CUDA_TEST_EXCLUDE := tests/test-cuda.c
endif
CU_OBJ := $(CU_SRC:%.cu=$(BUILD)/%.cu.o)
CUDA_GENCODE = $(foreach a,$(CUDA_ARCHS),-gencode=arch=compute_$(a),code=sm_$(a))

# Per-ISA kernel files: only they see intrinsics flags, so the binary runs on any
# CPU of its architecture and picks the kernels at start-up (src/kernels/cpu.c).
ifeq ($(ARCH),x86_64)
  ISA_SRC_EXCLUDE = %-neon.c %-neonbf16.c %-neoni8mm.c
else ifeq ($(ARCH),aarch64)
  ISA_SRC_EXCLUDE = %-avx2.c %-avx512.c %-avx512vnni.c %-avx512bf16.c
else
  ISA_SRC_EXCLUDE = %-avx2.c %-avx512.c %-avx512vnni.c %-avx512bf16.c %-neon.c %-neonbf16.c %-neoni8mm.c
endif
FLAGS_avx2   = -mavx2 -mfma -mf16c -mbmi2
FLAGS_avx512 = -mavx2 -mfma -mf16c -mbmi2 -mavx512f -mavx512bw -mavx512vl -mavx512dq
FLAGS_avx512vnni = $(FLAGS_avx512) -mavx512vnni
FLAGS_avx512bf16 = $(FLAGS_avx512vnni) -mavx512bf16
FLAGS_neon   = -march=armv8.2-a+fp16+dotprod
FLAGS_neonbf16 = -march=armv8.2-a+fp16+dotprod+bf16
FLAGS_neoni8mm = -march=armv8.2-a+fp16+dotprod+i8mm

SRC  := $(filter-out $(ISA_SRC_EXCLUDE) $(CUDA_SRC_EXCLUDE),$(wildcard src/*/*.c))
OBJ  := $(SRC:%.c=$(BUILD)/%.o) $(CU_OBJ)
TOOL_SRC := $(wildcard tools/*.c)
TOOL_OBJ := $(TOOL_SRC:%.c=$(BUILD)/%.o)
TEST_SRC := $(filter-out $(CUDA_TEST_EXCLUDE),$(wildcard tests/test-*.c))
TEST_BIN := $(TEST_SRC:tests/%.c=$(BUILD)/tests/%)
BENCH_SRC := $(wildcard bench/*.c)
BENCH_BIN := $(BENCH_SRC:bench/%.c=$(BUILD)/bench/%)
LIB  := $(BUILD)/libqtune.a

all: $(BUILD)/qtune

$(BUILD)/%-avx2.o: %-avx2.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(FLAGS_avx2) -c $< -o $@
$(BUILD)/%-avx512.o: %-avx512.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(FLAGS_avx512) -c $< -o $@
$(BUILD)/%-avx512vnni.o: %-avx512vnni.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(FLAGS_avx512vnni) -c $< -o $@
$(BUILD)/%-avx512bf16.o: %-avx512bf16.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(FLAGS_avx512bf16) -c $< -o $@
$(BUILD)/%-neon.o: %-neon.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(FLAGS_neon) -c $< -o $@
$(BUILD)/%-neonbf16.o: %-neonbf16.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(FLAGS_neonbf16) -c $< -o $@
$(BUILD)/%-neoni8mm.o: %-neoni8mm.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(FLAGS_neoni8mm) -c $< -o $@
# dist.o is rebuilt when MPI changes (e.g. Open MPI installed after a first build)
MPI_STAMP := $(BUILD)/mpi-$(MPI).stamp
$(MPI_STAMP):
	@mkdir -p $(BUILD) && rm -f $(BUILD)/mpi-*.stamp && touch $@
$(BUILD)/src/dist/%.o: src/dist/%.c $(MPI_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(MPI_CFLAGS) -c $< -o $@
# rebuilt when CUDA or CUDA_ARCHS change
CUDA_STAMP := $(BUILD)/cuda-$(CUDA)$(if $(filter 1,$(CUDA)),-$(subst $(eval) ,_,$(strip $(CUDA_ARCHS)))).stamp
$(CUDA_STAMP):
	@mkdir -p $(BUILD) && rm -f $(BUILD)/cuda-*.stamp && touch $@
$(BUILD)/src/backend/backend.o: src/backend/backend.c $(CUDA_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(CUDA_CFLAGS) -c $< -o $@
$(BUILD)/%.cu.o: %.cu $(CUDA_STAMP)
	@mkdir -p $(dir $@)
	$(NVCC) $(NVCCFLAGS) -std=c++17 -Isrc $(CUDA_GENCODE) -Xcompiler -Wall -MMD -MP -MF $(@:.o=.d) -c $< -o $@
$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@
# option tables (tools/) name aliases and ranges only on the rows that have them
$(TOOL_OBJ): CFLAGS += -Wno-missing-field-initializers

$(LIB): $(OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/qtune: $(TOOL_OBJ) $(LIB)
	$(CC) $(CFLAGS) -o $@ $(TOOL_OBJ) $(LIB) $(LDFLAGS) $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/tests/%.o $(LIB)
	$(CC) $(CFLAGS) -o $@ $< $(LIB) $(LDFLAGS) $(LDLIBS)
$(BUILD)/bench/%: $(BUILD)/bench/%.o $(LIB)
	$(CC) $(CFLAGS) -o $@ $< $(LIB) $(LDFLAGS) $(LDLIBS)

# make-model: tests/cli-interrupt.sh needs a model whose training step takes seconds
tests: $(TEST_BIN) $(BUILD)/qtune $(BUILD)/bench/make-model
bench: $(BENCH_BIN) $(BUILD)/qtune

test: tests
	@BUILD=$(BUILD) sh tests/run-tests.sh

# The GPU tests (tests/test-cuda.c): every op against the CPU backend, then
# model-level parity; QT_CUDA_TEST_MODELS adds random-weight models of real
# width (scripts/gpu-check.sh makes them).
cuda-test:
ifeq ($(CUDA),1)
	$(MAKE) $(BUILD)/tests/test-cuda $(BUILD)/qtune
	QT_CUDA_TEST_REQUIRE=1 $(BUILD)/tests/test-cuda
else
	@echo "cuda-test needs the CUDA build: make CUDA=1 cuda-test"; exit 2
endif

asan:
	$(MAKE) BUILD=build-asan OPT="-O1 -fno-omit-frame-pointer" \
	  EXTRA_CFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined" \
	  LDFLAGS="-fsanitize=address,undefined" QT_INTERRUPT_BATCH=2 QT_INTERRUPT_LIMIT=6 test

# arm64 kernels: cross-compiled with Debian's gcc-aarch64-linux-gnu, static, run
# under qemu-user. Only the layers test-kernels links (base, quant, kernels) are
# built: src/io and above need cJSON headers the cross toolchain lacks.
NEON_CC   ?= aarch64-linux-gnu-gcc
NEON_AR   ?= aarch64-linux-gnu-ar
NEON_QEMU ?= qemu-aarch64 -cpu max
NEON_SRC   = $(filter-out %-avx2.c %-avx512.c %-avx512vnni.c %-avx512bf16.c,$(wildcard src/base/*.c src/quant/*.c src/kernels/*.c))
# NEON_SAN: sanitizer flags for a second build (scripts/test.sh runs one under
# UBSan on a CPU without BF16/I8MM), NEON_BUILD its folder.
NEON_BUILD ?= build-arm64
NEON_SAN   ?=
neon-test:
	$(MAKE) ARCH=aarch64 CC=$(NEON_CC) AR=$(NEON_AR) BUILD=$(NEON_BUILD) LDFLAGS="-static $(NEON_SAN)" \
	  EXTRA_CFLAGS="$(NEON_SAN)" MPI=0 LDLIBS="-lm -pthread" SRC="$(NEON_SRC)" $(NEON_BUILD)/tests/test-kernels
	QT_TEST_MAX_THREADS=2 QT_TEST_POOL_RUNS=500 $(NEON_QEMU) $(NEON_BUILD)/tests/test-kernels

# The x86 SIMD tables (avx2, avx512, avx512-vnni, avx512-bf16) compiled a
# second time against SIMDe's portable intrinsics (Debian: libsimde-dev), no
# ISA flags, and held against the scalar reference by test-kernels: the
# AVX-512 code is tested on CPUs without AVX-512 (CI machines without it).
# -O1 without debug info: SIMDe's inlined intrinsics take gcc 8x longer at
# -O2 -g (a gemv file: 330 s against 40 s), and the test runs as fast.
SIMDE_SRC  = $(filter-out %-neon.c %-neonbf16.c %-neoni8mm.c,$(wildcard src/base/*.c src/quant/*.c src/kernels/*.c))
simde-test:
	$(MAKE) BUILD=build-simde MPI=0 OPT=-O1 DEBUG= EXTRA_CFLAGS=-DQT_SIMDE FLAGS_avx2= FLAGS_avx512= FLAGS_avx512vnni= \
	  FLAGS_avx512bf16= LDLIBS="-lm -pthread" SRC="$(SIMDE_SRC)" build-simde/tests/test-kernels
	QT_TEST_MAX_THREADS=2 QT_TEST_POOL_RUNS=500 build-simde/tests/test-kernels

clean:
	rm -rf build build-asan build-arm64 build-arm64-ubsan build-simde

.PHONY: all test tests asan bench neon-test simde-test cuda-test clean
-include $(OBJ:.o=.d) $(TOOL_OBJ:.o=.d) $(TEST_BIN:=.d) $(BENCH_BIN:=.d)
