/* Which kernels run: the instruction sets the CPU reports through CPUID and
 * the operating system enables (XGETBV), and LOWBIT_RUNTIME_ISA. */
#include <stdlib.h>
#include <string.h>

#include "runtime/kernels.h"
#include "runtime/runtime.h"

#if defined(__x86_64__)
#include <cpuid.h>
#endif

typedef struct isa_row {
    const char *name;
    const lb_rt_kernels *kernels;
} isa_row;

static const isa_row isas[] = {
    [LB_RT_ISA_PORTABLE] = {"portable", &lb_rt_kernels_portable},
#if defined(__x86_64__)
    [LB_RT_ISA_AVX2] = {"avx2", &lb_rt_kernels_avx2},
    [LB_RT_ISA_AVX512BW] = {"avx512bw", &lb_rt_kernels_avx512bw},
    [LB_RT_ISA_AVX512VNNI] = {"avx512vnni", &lb_rt_kernels_avx512vnni},
#else
    [LB_RT_ISA_AVX2] = {"avx2", NULL},
    [LB_RT_ISA_AVX512BW] = {"avx512bw", NULL},
    [LB_RT_ISA_AVX512VNNI] = {"avx512vnni", NULL},
#endif
};
_Static_assert(sizeof isas / sizeof isas[0] == LB_RT_ISA_COUNT, "runtime/isa.c: one row per lb_rt_isa");

const char *lb_rt_isa_name(lb_rt_isa isa) { return (unsigned)isa < LB_RT_ISA_COUNT ? isas[isa].name : "?"; }

const lb_rt_kernels *lb_rt_isa_kernels(lb_rt_isa isa) {
    return (unsigned)isa < LB_RT_ISA_COUNT ? isas[isa].kernels : NULL;
}

lb_rt_isa lb_rt_isa_best(void) {
#if defined(__x86_64__)
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return LB_RT_ISA_PORTABLE;
    const int osxsave = (c >> 27) & 1, avx = (c >> 28) & 1;
    if (!osxsave || !avx) return LB_RT_ISA_PORTABLE;
    /* XCR0: the OS saves the SSE and AVX state (bits 1, 2), and the AVX-512
     * opmask and upper ZMM state (bits 5, 6, 7). */
    unsigned lo, hi;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    const int os_avx = (lo & 0x6) == 0x6, os_avx512 = (lo & 0xe6) == 0xe6;
    if (!os_avx || !__get_cpuid_count(7, 0, &a, &b, &c, &d)) return LB_RT_ISA_PORTABLE;
    const int avx2 = (b >> 5) & 1, avx512f = (b >> 16) & 1, avx512bw = (b >> 30) & 1, vnni = (c >> 11) & 1;
    if (os_avx512 && avx512f && avx512bw) return vnni ? LB_RT_ISA_AVX512VNNI : LB_RT_ISA_AVX512BW;
    return avx2 ? LB_RT_ISA_AVX2 : LB_RT_ISA_PORTABLE;
#else
    return LB_RT_ISA_PORTABLE;
#endif
}

int lb_rt_cpu_prefetchw(void) {
#if defined(__x86_64__)
    unsigned a, b, c, d;
    return __get_cpuid(0x80000001u, &a, &b, &c, &d) && ((c >> 8) & 1);
#else
    return 0;
#endif
}

lb_status lb_rt_isa_parse(const char *name, lb_rt_isa *out) {
    for (int i = 0; i < LB_RT_ISA_COUNT; i++)
        if (!strcmp(name, isas[i].name)) {
            *out = (lb_rt_isa)i;
            return LB_OK;
        }
    return lb_error(LB_EINVAL, "unknown instruction set '%s' (expected portable, avx2, avx512bw or avx512vnni)", name);
}

lb_status lb_rt_isa_choose(int requested, lb_rt_isa *out) {
    const lb_rt_isa best = lb_rt_isa_best();
    lb_rt_isa isa = best;
    const char *from = "requested";
    if (requested == LB_RT_ISA_AUTO) {
        const char *env = getenv("LOWBIT_RUNTIME_ISA");
        if (env && *env) {
            if (lb_rt_isa_parse(env, &isa) != LB_OK) {
                lb_error_prefix("LOWBIT_RUNTIME_ISA");
                return lb_errcode();
            }
            from = "LOWBIT_RUNTIME_ISA";
        }
    } else if ((unsigned)requested < LB_RT_ISA_COUNT) {
        isa = (lb_rt_isa)requested;
    } else {
        return lb_error(LB_EINVAL, "runtime: instruction set %d: expected one of lb_rt_isa or LB_RT_ISA_AUTO", requested);
    }
    if (isa > best || !isas[isa].kernels)
        return lb_error(LB_EINVAL, "runtime: %s asks for the %s kernels, but this CPU runs at most %s", from,
                        isas[isa].name, isas[best].name);
    *out = isa;
    return LB_OK;
}
