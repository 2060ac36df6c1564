// Run a program as if the CPU had AVX2 and FMA but no AVX-512, VNNI or AMX: the code paths an
// AMD EPYC Zen 3 takes, at this machine's native speed (QEMU's emulation runs them too, but
// 20-50x slower, so it can check results, not speed).
//
//     gcc -O2 -shared -fPIC -o /tmp/avx2_only.so tools/avx2_only.c
//     LD_PRELOAD=/tmp/avx2_only.so python tools/bench_int8.py CKPT.pt INT8.onnx --batch 1 8
//
// Libraries pick their kernels from the CPUID instruction (PyTorch's and ONNX Runtime's
// cpuinfo, oneDNN, MLAS). Linux can make CPUID fault (arch_prctl ARCH_SET_CPUID, on CPUs that
// list `cpuid_fault` in /proc/cpuinfo, Intel's); this library turns that on before the
// program starts and answers each faulting CPUID itself: the real answer with the feature
// bits of AVX-512, VNNI (EVEX and VEX forms), AMX and AVX10 cleared, and their register
// state left out of the XSAVE leaf. Check it took: `torch.backends.cpu.get_cpu_capability()`
// says AVX2 and ldnet.deploy.nchwc.block_size() says 8. Threads and child processes inherit
// both the faulting and (through LD_PRELOAD) the handler.
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <cpuid.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

#define BIT(n) (1u << (n))

static long set_cpuid_enabled(int enabled) {
    return syscall(SYS_arch_prctl, ARCH_SET_CPUID, (unsigned long)enabled);
}

// Leaf 7, subleaf 0: EBX AVX512F, DQ, IFMA, PF, ER, CD, BW, VL; ECX AVX512_VBMI, VBMI2, VNNI,
// BITALG, VPOPCNTDQ; EDX AVX512_4VNNIW, 4FMAPS, VP2INTERSECT, AMX-BF16, AVX512_FP16, AMX-TILE,
// AMX-INT8. Leaf 7, subleaf 1: EAX AVX-VNNI, AVX512_BF16, AMX-FP16, AVX-IFMA; EDX
// AVX-VNNI-INT8, AVX-NE-CONVERT, AVX10. Leaf 0xD, subleaf 0: EAX opmask, ZMM_Hi256,
// Hi16_ZMM, TILECFG, TILEDATA state. Leaf 0x24: AVX10's own leaf.
static void mask(unsigned leaf, unsigned subleaf, unsigned *a, unsigned *b, unsigned *c,
                 unsigned *d) {
    if (leaf == 7 && subleaf == 0) {
        *b &= ~(BIT(16) | BIT(17) | BIT(21) | BIT(26) | BIT(27) | BIT(28) | BIT(30) | BIT(31));
        *c &= ~(BIT(1) | BIT(6) | BIT(11) | BIT(12) | BIT(14));
        *d &= ~(BIT(2) | BIT(3) | BIT(8) | BIT(22) | BIT(23) | BIT(24) | BIT(25));
    } else if (leaf == 7 && subleaf == 1) {
        *a &= ~(BIT(4) | BIT(5) | BIT(21) | BIT(23));
        *d &= ~(BIT(4) | BIT(5) | BIT(19));
    } else if (leaf == 0xd && subleaf == 0) {
        *a &= ~(BIT(5) | BIT(6) | BIT(7) | BIT(17) | BIT(18));
    } else if (leaf == 0x24) {
        *a = *b = *c = *d = 0;
    }
}

static void on_fault(int signal_number, siginfo_t *info, void *context) {
    (void)info;
    greg_t *registers = ((ucontext_t *)context)->uc_mcontext.gregs;
    const unsigned char *instruction = (const unsigned char *)registers[REG_RIP];
    if (instruction[0] != 0x0f || instruction[1] != 0xa2) {  // not CPUID: a real crash
        signal(signal_number, SIG_DFL);
        return;  // the instruction faults again, now with the default action
    }
    unsigned leaf = (unsigned)registers[REG_RAX], subleaf = (unsigned)registers[REG_RCX];
    unsigned a, b, c, d;
    set_cpuid_enabled(1);
    __cpuid_count(leaf, subleaf, a, b, c, d);
    set_cpuid_enabled(0);
    mask(leaf, subleaf, &a, &b, &c, &d);
    registers[REG_RAX] = a;
    registers[REG_RBX] = b;
    registers[REG_RCX] = c;
    registers[REG_RDX] = d;
    registers[REG_RIP] += 2;  // past the two-byte CPUID
}

__attribute__((constructor)) static void start_masking(void) {
    struct sigaction action;
    memset(&action, 0, sizeof action);
    action.sa_sigaction = on_fault;
    action.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigaction(SIGSEGV, &action, NULL);
    if (set_cpuid_enabled(0) != 0) {
        perror("avx2_only: arch_prctl(ARCH_SET_CPUID) (no cpuid_fault on this CPU?)");
        _exit(99);
    }
}
