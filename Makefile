# aoe — build, test, sanitizers, benchmarks.
# Dependencies come from Debian packages (see `make deps`); nothing is vendored.

CC      ?= cc
BLIS_INC = /usr/include/x86_64-linux-gnu/blis-openmp
BLIS_LIB = /usr/lib/x86_64-linux-gnu/blis-openmp
MARCH   := $(shell $(CC) -march=native -E -x c /dev/null >/dev/null 2>&1 && echo -march=native)
OPT     ?= -O3 $(MARCH)
CFLAGS  += -std=c11 -D_GNU_SOURCE -Wall -Wextra -fopenmp -fno-math-errno $(OPT) -g -Isrc -isystem $(BLIS_INC)
# Open MPI (dist/): flags from pkg-config, so plain cc builds it
MPI_CFLAGS := $(shell pkg-config --cflags ompi-c 2>/dev/null)
MPI_LIBS   := $(shell pkg-config --libs ompi-c 2>/dev/null || echo -lmpi)
CFLAGS  += $(MPI_CFLAGS)
LDLIBS  += -L$(BLIS_LIB) -Wl,-rpath,$(BLIS_LIB) -lblis -ldnnl -lcjson -lz -lm -fopenmp $(MPI_LIBS)

SRC      := $(shell find src -name '*.c' ! -name main.c | sort)
TEST_SRC := $(shell find tests -name '*.c' ! -path 'tests/fuzz/*' | sort)
OBJDIR  ?= build
OBJ      := $(SRC:%.c=$(OBJDIR)/%.o)
TEST_OBJ := $(TEST_SRC:%.c=$(OBJDIR)/%.o)
DEPS_PKGS = build-essential libblis-dev libdnnl-dev libcjson-dev zlib1g-dev gnuplot-nox bzip2 libopenmpi-dev openmpi-bin clang

PREFIX  ?= /usr/local

.PHONY: all deps deps-interop test asan ubsan bench mpi-collectives clean data install
all: aoe

aoe: $(OBJDIR)/src/main.o $(OBJ)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(OBJDIR)/aoe_tests: $(TEST_OBJ) $(OBJ)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

$(OBJDIR)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c -o $@ $<

-include $(OBJ:.o=.d) $(TEST_OBJ:.o=.d) $(OBJDIR)/src/main.d $(wildcard $(OBJDIR)/tests/fuzz/*.d)

# As root apt-get runs directly (containers and CI images often have no sudo); as a user through sudo.
apt_install = if [ "$$(id -u)" = 0 ]; then SUDO=; elif command -v sudo >/dev/null; then SUDO=sudo; \
	else echo "make $@: not root and no sudo; as root run: apt-get install -y $(1)"; exit 1; fi; \
	$$SUDO apt-get update -qq && $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(1)
deps:
	@$(call apt_install,$(DEPS_PKGS))

# Optional, for tools/aoe_torch.py only (docs/interop.md); nothing in `make test` needs it.
deps-interop:
	@$(call apt_install,python3-torch)

# The binary and the shipped benchmark files; an installed aoe finds its tasks in
# $(PREFIX)/share/aoe/tasks (docs/eval.md, "Where task data lives").
install: aoe
	install -D -m 755 aoe $(DESTDIR)$(PREFIX)/bin/aoe
	mkdir -p $(DESTDIR)$(PREFIX)/share/aoe
	rm -rf $(DESTDIR)$(PREFIX)/share/aoe/tasks
	cp -R data/tasks $(DESTDIR)$(PREFIX)/share/aoe/tasks

# The test runner drives ./aoe for CLI tests, so both are built with the same flags.
# check-includes.sh: src/ folders follow the layer order, no shared file names (fails the test).
test: aoe $(OBJDIR)/aoe_tests $(OBJDIR)/mpi-collectives
	tools/check-includes.sh
	AOE_BIN=./aoe AOE_MPI_COLLECTIVES=$(OBJDIR)/mpi-collectives OMP_NUM_THREADS=2 $(OBJDIR)/aoe_tests $(T)

asan:
	$(MAKE) OBJDIR=build-asan OPT="-O1 -fsanitize=address -fno-omit-frame-pointer" \
	  LDLIBS_EXTRA= test-san
ubsan:
	$(MAKE) OBJDIR=build-ubsan OPT="-O1 -fsanitize=undefined -fno-sanitize-recover=undefined" test-san

# sanitizer builds write their own binary so they never replace ./aoe
test-san: $(OBJDIR)/aoe $(OBJDIR)/aoe_tests $(OBJDIR)/mpi-collectives
	ASAN_OPTIONS=detect_leaks=0 AOE_BIN=$(OBJDIR)/aoe AOE_MPI_COLLECTIVES=$(OBJDIR)/mpi-collectives OMP_NUM_THREADS=2 $(OBJDIR)/aoe_tests $(T)
$(OBJDIR)/aoe: $(OBJDIR)/src/main.o $(OBJ)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

bench: aoe
	./aoe bench

# The timing behind src/dist's ring (docs/distributed.md): mpirun -np 2 build/mpi-collectives
mpi-collectives: $(OBJDIR)/mpi-collectives
$(OBJDIR)/mpi-collectives: tools/mpi-collectives.c $(OBJ)
	$(CC) $(CFLAGS) -o $@ $^ $(LDLIBS)

# The shipped corpus (data/text, see data/README.md) -> data/prepared/tokenizer.bpe,
# train-*.shard, val-*.shard: BPE vocab 4096, 5% of documents held out (seed 1). ~1 s on 2 cores.
data: aoe
	./aoe prepare --out data/prepared --vocab 4096 --seed 1 --glob '*.txt' data/text

clean:
	rm -rf build build-asan build-ubsan build-fuzz aoe

# Fuzzing (libFuzzer via clang, docs/fuzzing.md): `make fuzz-NAME [FUZZ_SECONDS=60]` runs the
# harness tests/fuzz/fuzz_NAME.c for that long from the seed corpus tests/fuzz/corpus/NAME (new
# inputs go to build-fuzz/corpus-NAME); `make fuzz-smoke` runs each for FUZZ_SMOKE seconds (CI).
FUZZ_TARGETS = config tasks shard tokenizer ckpt
FUZZ_SECONDS ?= 60
FUZZ_SMOKE ?= 6
FUZZ_FLAGS ?=
FUZZ_OPT = -Wno-pass-failed -O1 -g -fno-omit-frame-pointer -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined
.PHONY: fuzz-smoke $(FUZZ_TARGETS:%=fuzz-%)
$(FUZZ_TARGETS:%=fuzz-%): fuzz-%:
	$(MAKE) CC=clang OBJDIR=build-fuzz OPT="$(FUZZ_OPT)" build-fuzz/fuzz_$*
	@mkdir -p build-fuzz/corpus-$*
	ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1 OMP_NUM_THREADS=1 build-fuzz/fuzz_$* \
	  -max_total_time=$(FUZZ_SECONDS) -timeout=10 -rss_limit_mb=4096 -print_final_stats=1 -close_fd_mask=2 $(FUZZ_FLAGS) \
	  -artifact_prefix=build-fuzz/crash-$*- build-fuzz/corpus-$* tests/fuzz/corpus/$*
build-fuzz/fuzz_%: build-fuzz/tests/fuzz/fuzz_%.o $(SRC:%.c=build-fuzz/%.o)
	$(CC) $(CFLAGS) -fsanitize=fuzzer,address,undefined -o $@ $^ $(LDLIBS)
fuzz-smoke:
	for t in $(FUZZ_TARGETS); do $(MAKE) --no-print-directory fuzz-$$t FUZZ_SECONDS=$(FUZZ_SMOKE) || exit 1; done
