/* int4 matrix products for CPUs with AVX2 and FMA but without AVX512-BF16.
 *
 * Same entry points, layout and contract as q4_kernels.c (packed (N/64, K, 32) bytes, byte j of
 * column k of a row block holding rows j (low nibble) and j+32 (high nibble); (scale, zero)
 * bf16 pairs (K/32, N, 2); w = (digit - 8) * scale + zero; y = W x (+ acc_in) stored to
 * out_f32 and/or out_bf16). This compiles to nothing where q4_kernels.c has its AVX-512 body.
 *
 * Without bf16 dot products, each group of 32 inputs is rounded to int16 with its own step
 * (max |x| / 32767: a relative error under 2^-15 of the group's largest input, finer than the
 * bf16 rounding the inputs already carry). Two columns of 16 rows become int16 pairs
 * (digit k, digit k+1) for one vpmaddwd against the broadcast pair (x[k], x[k+1]); the int32
 * sums (at most 32 * 15 * 32767 in magnitude) are exact. Per group,
 * y += scale * step * sum(digit * q) + (zero - 8 scale) * sum(x), with sum(x) exact.
 * (int8 inputs, llama.cpp's choice, ran about 10% faster here with 3-4x the error: not taken.)
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bf16.h"

#if !(defined(__AVX512BF16__) && defined(__AVX512VBMI__) && defined(__AVX512BW__)) && \
    defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>

#define ROW_BLOCK 64
#define GROUP 32
#define Q_MAX 32767.0f
#define PARALLEL_MIN_WORK 65536L /* multiply-adds below which threads cost more */
#define PREFETCH_BYTES 2048 /* how far ahead the weight stream is fetched (as q4_kernels.c) */
#define TILE_TOKENS 2       /* tokens sharing one set of weight pairs (8 int32 accumulators) */

int fs_gemv_available(void) { return 1; }

/* Inputs as int16 per group: q[t*K + k], step[t*G + g], sum_x[t*G + g]. */
struct quantized {
    int16_t *q;
    float *step;
    const float *sum_x;
};

/* The 32 bf16 inputs at x as four registers of floats. */
static inline void load_group(const uint16_t *x, __m256 v[4]) {
    for (int i = 0; i < 4; ++i) {
        __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)(x + 8 * i)));
        v[i] = _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
    }
}

static inline float horizontal(__m256 v, __m128 (*op)(__m128, __m128)) {
    __m128 r = op(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    r = op(r, _mm_movehl_ps(r, r));
    r = op(r, _mm_shuffle_ps(r, r, 1));
    return _mm_cvtss_f32(r);
}

static __m128 max4(__m128 a, __m128 b) { return _mm_max_ps(a, b); }
static __m128 add4(__m128 a, __m128 b) { return _mm_add_ps(a, b); }

/* q = round(x / step) with step = max |x| / 32767 (|x / step| <= 32767: cvtps rounds to
 * nearest even), and the exact float sum of the group. */
static void quantize_group(const uint16_t *x, int16_t *q, float *step, float *sum) {
    const __m256 sign = _mm256_set1_ps(-0.0f);
    __m256 v[4];
    load_group(x, v);
    __m256 largest = _mm256_max_ps(_mm256_max_ps(_mm256_andnot_ps(sign, v[0]),
                                                 _mm256_andnot_ps(sign, v[1])),
                                   _mm256_max_ps(_mm256_andnot_ps(sign, v[2]),
                                                 _mm256_andnot_ps(sign, v[3])));
    __m256 total = _mm256_add_ps(_mm256_add_ps(v[0], v[1]), _mm256_add_ps(v[2], v[3]));
    float top = horizontal(largest, max4);
    float inverse = top > 0.0f && isfinite(top) ? Q_MAX / top : 0.0f;
    __m256i n[4];
    for (int i = 0; i < 4; ++i)
        n[i] = _mm256_cvtps_epi32(_mm256_mul_ps(v[i], _mm256_set1_ps(inverse)));
    /* packs interleaves the 128-bit lanes; the permute restores the order */
    __m256i w0 = _mm256_permute4x64_epi64(_mm256_packs_epi32(n[0], n[1]), 0xd8);
    __m256i w1 = _mm256_permute4x64_epi64(_mm256_packs_epi32(n[2], n[3]), 0xd8);
    _mm256_storeu_si256((__m256i *)q, w0);
    _mm256_storeu_si256((__m256i *)(q + 16), w1);
    *step = top / Q_MAX; /* inf or NaN inputs make the step or the sum non-finite, */
    *sum = horizontal(total, add4) + 0.0f * top; /* and with them the outputs */
}
static int quantize(const uint16_t *x, int n_tokens, int n_cols, float *sum_x,
                    struct quantized *out) {
    size_t groups = (size_t)n_tokens * (size_t)(n_cols / GROUP);
    out->q = malloc((size_t)n_tokens * (size_t)n_cols * sizeof(int16_t));
    out->step = malloc(groups * sizeof(float));
    out->sum_x = sum_x;
    if (!out->q || !out->step) {
        free(out->q);
        free(out->step);
        return 0;
    }
#pragma omp parallel for schedule(static) if (groups >= 256)
    for (size_t g = 0; g < groups; ++g)
        quantize_group(x + g * GROUP, out->q + g * GROUP, out->step + g, sum_x + g);
    return 1;
}

static void release(struct quantized *qx) {
    free(qx->q);
    free(qx->step);
}

/* int16 pairs (digit k, digit k+1) of 32 rows of a block: half 0 is rows 0..31, half 1 rows
 * 32..63. w[0]: rows 0-3 | 16-19, w[1]: 4-7 | 20-23, w[2]: 8-11 | 24-27, w[3]: 12-15 | 28-31
 * (plus 32 for half 1; "|" separates the two 128-bit lanes). */
static inline void load_pairs(const uint8_t *column_pair, int half, __m256i w[4]) {
    const __m256i low4 = _mm256_set1_epi8(0x0f), zero = _mm256_setzero_si256();
    __m256i c0 = _mm256_loadu_si256((const __m256i *)column_pair);
    __m256i c1 = _mm256_loadu_si256((const __m256i *)(column_pair + 32));
    if (half) {
        c0 = _mm256_srli_epi16(c0, 4);
        c1 = _mm256_srli_epi16(c1, 4);
    }
    c0 = _mm256_and_si256(c0, low4);
    c1 = _mm256_and_si256(c1, low4);
    __m256i a = _mm256_unpacklo_epi8(c0, c1), b = _mm256_unpackhi_epi8(c0, c1);
    w[0] = _mm256_unpacklo_epi8(a, zero);
    w[1] = _mm256_unpackhi_epi8(a, zero);
    w[2] = _mm256_unpacklo_epi8(b, zero);
    w[3] = _mm256_unpackhi_epi8(b, zero);
}

/* The matrix: one plane, or two with the second's scale 16 times the first's and no offset of
 * its own (Q5_*, Q8_0: digit = low + 16 * high, 0..255, and the first plane's (scale, zero)
 * serve both; int32 sums stay below 32 * 255 * 32767 < 2^31). */
struct planes {
    const uint8_t *packed, *packed_hi; /* packed_hi: NULL for one plane */
    const uint16_t *sz;
};

#define FORCE_INLINE static inline __attribute__((always_inline))

/* load_pairs of the combined digits at byte offset `at` of a block's columns. */
FORCE_INLINE void load_digits(const uint8_t *lo, const uint8_t *hi, size_t at, int half,
                              int two, __m256i w[4]) {
    load_pairs(lo + at, half, w);
    if (two) {
        __m256i h[4];
        load_pairs(hi + at, half, h);
        for (int r = 0; r < 4; ++r) w[r] = _mm256_add_epi16(w[r], _mm256_slli_epi16(h[r], 4));
    }
}

static inline __m256i broadcast_pair(const int16_t *q) {
    int32_t pair;
    memcpy(&pair, q, sizeof pair);
    return _mm256_set1_epi32(pair);
}

/* The int32 sums of load_pairs' order as floats in row order: rows 0-7, 8-15, 16-23, 24-31. */
static inline void in_row_order(const __m256i acc[4], __m256 rows[4]) {
    rows[0] = _mm256_cvtepi32_ps(_mm256_permute2x128_si256(acc[0], acc[1], 0x20));
    rows[1] = _mm256_cvtepi32_ps(_mm256_permute2x128_si256(acc[2], acc[3], 0x20));
    rows[2] = _mm256_cvtepi32_ps(_mm256_permute2x128_si256(acc[0], acc[1], 0x31));
    rows[3] = _mm256_cvtepi32_ps(_mm256_permute2x128_si256(acc[2], acc[3], 0x31));
}

/* Scale and bias (zero - 8 scale) of 8 rows from their (scale, zero) bf16 pairs. */
static inline void scale_bias(const uint16_t *pairs8, __m256 *s, __m256 *bias) {
    __m256i pairs = _mm256_loadu_si256((const __m256i *)pairs8);
    *s = _mm256_castsi256_ps(_mm256_slli_epi32(pairs, 16));
    __m256 z = _mm256_castsi256_ps(_mm256_and_si256(pairs, _mm256_set1_epi32((int)0xffff0000u)));
    *bias = _mm256_fnmadd_ps(_mm256_set1_ps(8.0f), *s, z);
}

/* bf16 of 8 floats, rounded as f32_to_bf16 rounds (nearest even; NaN stays a quiet NaN). */
static inline __m128i to_bf16(__m256 y) {
    __m256i u = _mm256_castps_si256(y);
    __m256i odd = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
    __m256i rounded = _mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), odd);
    __m256i high = _mm256_srli_epi32(rounded, 16);
    __m256i quiet = _mm256_or_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(0x40));
    __m256 nan = _mm256_cmp_ps(y, y, _CMP_UNORD_Q);
    high = _mm256_blendv_epi8(high, quiet, _mm256_castps_si256(nan));
    return _mm_packus_epi32(_mm256_castsi256_si128(high), _mm256_extracti128_si256(high, 1));
}

static void store_rows(__m256 y, size_t at, const float *acc_in, float *out_f32,
                       uint16_t *out_bf16) {
    if (acc_in) y = _mm256_add_ps(y, _mm256_loadu_ps(acc_in + at));
    if (out_f32) _mm256_storeu_ps(out_f32 + at, y);
    if (out_bf16) _mm_storeu_si128((__m128i *)(out_bf16 + at), to_bf16(y));
}

/* One vector by rows block*64 .. +63: both nibble halves of a column pair per load. */
FORCE_INLINE void gemv_block(const struct planes *m, const struct quantized *qx, int n_rows,
                             int n_cols, int block, int two, const float *acc_in,
                             float *out_f32, uint16_t *out_bf16) {
    const size_t base = (size_t)block * n_cols * 32;
    __m256 y[8];
    for (int r = 0; r < 8; ++r) y[r] = _mm256_setzero_ps();
    for (int g = 0; g < n_cols / GROUP; ++g) {
        __m256i acc[8];
        for (int r = 0; r < 8; ++r) acc[r] = _mm256_setzero_si256();
        for (int c = 0; c < GROUP / 2; ++c) {
            int k = g * GROUP + 2 * c;
            size_t at = base + (size_t)k * 32;
            _mm_prefetch((const char *)(m->packed + at + PREFETCH_BYTES), _MM_HINT_T0);
            if (two) _mm_prefetch((const char *)(m->packed_hi + at + PREFETCH_BYTES), _MM_HINT_T0);
            __m256i xs = broadcast_pair(qx->q + k), w[4];
            for (int half = 0; half < 2; ++half) {
                load_digits(m->packed, m->packed_hi, at, half, two, w);
                for (int r = 0; r < 4; ++r)
                    acc[4 * half + r] =
                        _mm256_add_epi32(acc[4 * half + r], _mm256_madd_epi16(w[r], xs));
            }
        }
        __m256 step = _mm256_set1_ps(qx->step[g]), sum = _mm256_set1_ps(qx->sum_x[g]);
        const size_t group_sz = ((size_t)g * n_rows + (size_t)block * ROW_BLOCK) * 2;
        for (int half = 0; half < 2; ++half) {
            __m256 rows[4];
            in_row_order(acc + 4 * half, rows);
            for (int r = 0; r < 4; ++r) {
                __m256 s, bias;
                scale_bias(m->sz + group_sz + 64 * half + 16 * r, &s, &bias);
                y[4 * half + r] = _mm256_fmadd_ps(_mm256_mul_ps(s, step), rows[r], y[4 * half + r]);
                y[4 * half + r] = _mm256_fmadd_ps(bias, sum, y[4 * half + r]);
            }
        }
    }
    for (int r = 0; r < 8; ++r)
        store_rows(y[r], (size_t)block * ROW_BLOCK + 8 * r, acc_in, out_f32, out_bf16);
}

/* Rows block*64 + half*32 .. +31 for tokens t0 .. t0+n-1 (n <= TILE_TOKENS; missing tokens
 * repeat the last one and are not stored). */
FORCE_INLINE void half_block_tile(const struct planes *m, const struct quantized *qx, int n_rows,
                                  int n_cols, int block, int half, int t0, int n, int two,
                                  const float *acc_in, float *out_f32, uint16_t *out_bf16) {
    const int groups = n_cols / GROUP;
    const int first_row = block * ROW_BLOCK + half * 32;
    const size_t base = (size_t)block * n_cols * 32;
    const int16_t *qt[TILE_TOKENS];
    int token[TILE_TOKENS];
    for (int t = 0; t < TILE_TOKENS; ++t) {
        token[t] = t0 + (t < n ? t : n - 1);
        qt[t] = qx->q + (size_t)token[t] * n_cols;
    }
    __m256 y[TILE_TOKENS][4];
    for (int t = 0; t < TILE_TOKENS; ++t)
        for (int r = 0; r < 4; ++r) y[t][r] = _mm256_setzero_ps();
    for (int g = 0; g < groups; ++g) {
        __m256i acc[TILE_TOKENS][4];
        for (int t = 0; t < TILE_TOKENS; ++t)
            for (int r = 0; r < 4; ++r) acc[t][r] = _mm256_setzero_si256();
#pragma GCC unroll 16 /* 2-5% faster here (A/B in one run, equal sums) */
        for (int c = 0; c < GROUP / 2; ++c) {
            int k = g * GROUP + 2 * c;
            __m256i w[4];
            load_digits(m->packed, m->packed_hi, base + (size_t)k * 32, half, two, w);
            for (int t = 0; t < TILE_TOKENS; ++t) {
                __m256i xs = broadcast_pair(qt[t] + k);
                for (int r = 0; r < 4; ++r)
                    acc[t][r] = _mm256_add_epi32(acc[t][r], _mm256_madd_epi16(w[r], xs));
            }
        }
        const size_t group_sz = ((size_t)g * n_rows + (size_t)first_row) * 2;
        __m256 s[4], bias[4];
        for (int r = 0; r < 4; ++r) scale_bias(m->sz + group_sz + 16 * r, &s[r], &bias[r]);
        for (int t = 0; t < TILE_TOKENS; ++t) {
            size_t at = (size_t)token[t] * groups + g;
            __m256 step = _mm256_set1_ps(qx->step[at]), sum = _mm256_set1_ps(qx->sum_x[at]);
            __m256 rows[4];
            in_row_order(acc[t], rows);
            for (int r = 0; r < 4; ++r) {
                y[t][r] = _mm256_fmadd_ps(_mm256_mul_ps(s[r], step), rows[r], y[t][r]);
                y[t][r] = _mm256_fmadd_ps(bias[r], sum, y[t][r]);
            }
        }
    }
    for (int t = 0; t < n; ++t)
        for (int r = 0; r < 4; ++r)
            store_rows(y[t][r], (size_t)(t0 + t) * n_rows + (size_t)first_row + 8 * r, acc_in,
                       out_f32, out_bf16);
}

/* ----- prefill: 16-row strips against tiles of STRIP_TILE tokens --------------------------
 * From STRIP_MIN_TOKENS tokens each thread takes strips of 16 rows; per chunk of CHUNK_COLS
 * columns it unpacks the strip's digit pairs once into an L1 panel (16 KB) and multiplies
 * them with every token, 6 at a time: 12 int32 accumulators, 2 weight registers, 1 broadcast
 * input and 1 product fill the 16 registers exactly, which is why that loop is written in
 * assembly (GCC spilled 9 of the 12 accumulators). Same int32 sums and the same per-group
 * float epilogue as half_block_tile, so the outputs are equal to the bit. */
#define STRIP_ROWS 16
#define STRIP_TILE 6
#define CHUNK_COLS 512
#define STRIP_MIN_TOKENS 48 /* measured: 10-30% ahead of half_block_tile from 48, even at 32 */

/* The int16 pairs (digit k, digit k+1) of strip rows 0-7 (w[0]) and 8-15 (w[1]) in row order:
 * bytes 16 * quarter .. +15 of both columns, low nibbles for half 0, high for half 1. */
FORCE_INLINE void strip_pairs(const uint8_t *column_pair, int half, int quarter, __m256i w[2]) {
    const __m128i low4 = _mm_set1_epi8(0x0f);
    __m128i c0 = _mm_loadu_si128((const __m128i *)(column_pair + 16 * quarter));
    __m128i c1 = _mm_loadu_si128((const __m128i *)(column_pair + 32 + 16 * quarter));
    if (half) {
        c0 = _mm_srli_epi16(c0, 4);
        c1 = _mm_srli_epi16(c1, 4);
    }
    c0 = _mm_and_si128(c0, low4);
    c1 = _mm_and_si128(c1, low4);
    w[0] = _mm256_cvtepu8_epi16(_mm_unpacklo_epi8(c0, c1));
    w[1] = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(c0, c1));
}

/* The strip's pairs for columns k0 .. k0+cols-1 (two planes combined as in load_digits). */
static void unpack_strip(const struct planes *m, size_t base, int k0, int cols, int half,
                         int quarter, __m256i *panel) {
    for (int c = 0; c < cols / 2; ++c) {
        size_t at = base + (size_t)(k0 + 2 * c) * 32;
        strip_pairs(m->packed + at, half, quarter, panel + 2 * c);
        if (m->packed_hi) {
            __m256i h[2];
            strip_pairs(m->packed_hi + at, half, quarter, h);
            for (int r = 0; r < 2; ++r)
                panel[2 * c + r] = _mm256_add_epi16(panel[2 * c + r], _mm256_slli_epi16(h[r], 4));
        }
    }
}

#define FS_TOKEN(address, acc0, acc1)             \
    "vpbroadcastd " address ", %%ymm14\n\t"       \
    "vpmaddwd %%ymm14, %%ymm12, %%ymm15\n\t"      \
    "vpaddd %%ymm15, %%" acc0 ", %%" acc0 "\n\t"  \
    "vpmaddwd %%ymm14, %%ymm13, %%ymm15\n\t"      \
    "vpaddd %%ymm15, %%" acc1 ", %%" acc1 "\n\t"

/* out[2t + r] = the int32 sums of one group (16 pairs of the panel at w) for token t (inputs at
 * q + t * stride) and rows 8r .. 8r+7. Registers: accumulators ymm0-11, weights ymm12-13, the
 * broadcast input pair ymm14, products ymm15. */
static __attribute__((noinline)) void group_sums6(const __m256i *w, const int16_t *q,
                                                   size_t stride, __m256i out[2 * STRIP_TILE]) {
    const size_t s1 = stride * sizeof(int16_t), s3 = 3 * s1, s5 = 5 * s1;
    long pairs = GROUP / 2;
    __asm__ volatile(
        "vpxor %%xmm0, %%xmm0, %%xmm0\n\t"
        "vmovdqa %%ymm0, %%ymm1\n\t vmovdqa %%ymm0, %%ymm2\n\t vmovdqa %%ymm0, %%ymm3\n\t"
        "vmovdqa %%ymm0, %%ymm4\n\t vmovdqa %%ymm0, %%ymm5\n\t vmovdqa %%ymm0, %%ymm6\n\t"
        "vmovdqa %%ymm0, %%ymm7\n\t vmovdqa %%ymm0, %%ymm8\n\t vmovdqa %%ymm0, %%ymm9\n\t"
        "vmovdqa %%ymm0, %%ymm10\n\t vmovdqa %%ymm0, %%ymm11\n\t"
        "1:\n\t"
        "vmovdqa (%[w]), %%ymm12\n\t"
        "vmovdqa 32(%[w]), %%ymm13\n\t"
        FS_TOKEN("(%[q])", "ymm0", "ymm1")
        FS_TOKEN("(%[q],%[s1])", "ymm2", "ymm3")
        FS_TOKEN("(%[q],%[s1],2)", "ymm4", "ymm5")
        FS_TOKEN("(%[q],%[s3])", "ymm6", "ymm7")
        FS_TOKEN("(%[q],%[s1],4)", "ymm8", "ymm9")
        FS_TOKEN("(%[q],%[s5])", "ymm10", "ymm11")
        "add $64, %[w]\n\t"
        "add $4, %[q]\n\t"
        "dec %[n]\n\t"
        "jnz 1b\n\t"
        "vmovdqu %%ymm0, (%[out])\n\t vmovdqu %%ymm1, 32(%[out])\n\t"
        "vmovdqu %%ymm2, 64(%[out])\n\t vmovdqu %%ymm3, 96(%[out])\n\t"
        "vmovdqu %%ymm4, 128(%[out])\n\t vmovdqu %%ymm5, 160(%[out])\n\t"
        "vmovdqu %%ymm6, 192(%[out])\n\t vmovdqu %%ymm7, 224(%[out])\n\t"
        "vmovdqu %%ymm8, 256(%[out])\n\t vmovdqu %%ymm9, 288(%[out])\n\t"
        "vmovdqu %%ymm10, 320(%[out])\n\t vmovdqu %%ymm11, 352(%[out])\n\t"
        : [w] "+r"(w), [q] "+r"(q), [n] "+r"(pairs)
        : [s1] "r"(s1), [s3] "r"(s3), [s5] "r"(s5), [out] "r"(out)
        : "memory", "cc", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7",
          "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15");
}
#undef FS_TOKEN

/* group_sums6 for n < STRIP_TILE tokens (the tail of a prompt), in C. */
FORCE_INLINE void group_sums(const __m256i *w, const int16_t *q, size_t stride, int n,
                             __m256i out[2 * STRIP_TILE]) {
    for (int t = 0; t < n; ++t) out[2 * t] = out[2 * t + 1] = _mm256_setzero_si256();
    for (int c = 0; c < GROUP / 2; ++c) {
        __m256i w0 = _mm256_load_si256(w + 2 * c), w1 = _mm256_load_si256(w + 2 * c + 1);
        for (int t = 0; t < n; ++t) {
            __m256i xs = broadcast_pair(q + (size_t)t * stride + 2 * c);
            out[2 * t] = _mm256_add_epi32(out[2 * t], _mm256_madd_epi16(w0, xs));
            out[2 * t + 1] = _mm256_add_epi32(out[2 * t + 1], _mm256_madd_epi16(w1, xs));
        }
    }
}

/* The strip's scale and bias (zero - 8 scale) per group of a chunk: s[2g + r], rows 8r.. */
static void strip_scales(const struct planes *m, int n_rows, int first_row, int g0, int n_groups,
                         __m256 *s, __m256 *bias) {
    for (int g = 0; g < n_groups; ++g) {
        size_t group_sz = ((size_t)(g0 + g) * n_rows + (size_t)first_row) * 2;
        for (int r = 0; r < 2; ++r)
            scale_bias(m->sz + group_sz + 16 * r, &s[2 * g + r], &bias[2 * g + r]);
    }
}

/* y (16 floats per token, rows in order) += the chunk's groups g0 .. for tokens t0 .. t0+n-1. */
static void strip_tile(const __m256i *panel, const __m256 *s, const __m256 *bias,
                       const struct quantized *qx, int n_cols, int g0, int n_groups, int t0,
                       int n, float *y) {
    const int groups_total = n_cols / GROUP;
    const int16_t *q = qx->q + (size_t)t0 * n_cols + (size_t)g0 * GROUP;
    __m256i acc[2 * STRIP_TILE];
    for (int g = 0; g < n_groups; ++g) {
        const __m256i *w = panel + (size_t)g * GROUP;
        if (n == STRIP_TILE)
            group_sums6(w, q + g * GROUP, (size_t)n_cols, acc);
        else
            group_sums(w, q + g * GROUP, (size_t)n_cols, n, acc);
        for (int t = 0; t < n; ++t) {
            size_t at = (size_t)(t0 + t) * groups_total + g0 + g;
            __m256 step = _mm256_set1_ps(qx->step[at]), sum = _mm256_set1_ps(qx->sum_x[at]);
            float *yt = y + (size_t)(t0 + t) * STRIP_ROWS;
            for (int r = 0; r < 2; ++r) {
                __m256 v = _mm256_fmadd_ps(_mm256_mul_ps(s[2 * g + r], step),
                                           _mm256_cvtepi32_ps(acc[2 * t + r]),
                                           _mm256_load_ps(yt + 8 * r));
                _mm256_store_ps(yt + 8 * r, _mm256_fmadd_ps(bias[2 * g + r], sum, v));
            }
        }
    }
}

/* Rows 16 * strip .. +15 for every token; panel and y are the thread's buffers. */
static void strip_products(const struct planes *m, const struct quantized *qx, int n_tokens,
                           int n_rows, int n_cols, int strip, __m256i *panel, float *y,
                           const float *acc_in, float *out_f32, uint16_t *out_bf16) {
    const int block = strip / 4, half = (strip / 2) % 2, quarter = strip % 2;
    const int first_row = strip * STRIP_ROWS;
    const size_t base = (size_t)block * n_cols * 32;
    __m256 s[2 * CHUNK_COLS / GROUP], bias[2 * CHUNK_COLS / GROUP];
    memset(y, 0, (size_t)n_tokens * STRIP_ROWS * sizeof(float));
    for (int k0 = 0; k0 < n_cols; k0 += CHUNK_COLS) {
        int cols = n_cols - k0 < CHUNK_COLS ? n_cols - k0 : CHUNK_COLS;
        unpack_strip(m, base, k0, cols, half, quarter, panel);
        strip_scales(m, n_rows, first_row, k0 / GROUP, cols / GROUP, s, bias);
        for (int t0 = 0; t0 < n_tokens; t0 += STRIP_TILE) {
            int n = n_tokens - t0 < STRIP_TILE ? n_tokens - t0 : STRIP_TILE;
            strip_tile(panel, s, bias, qx, n_cols, k0 / GROUP, cols / GROUP, t0, n, y);
        }
    }
    for (int t = 0; t < n_tokens; ++t)
        for (int r = 0; r < 2; ++r)
            store_rows(_mm256_load_ps(y + (size_t)t * STRIP_ROWS + 8 * r),
                       (size_t)t * n_rows + (size_t)first_row + 8 * r, acc_in, out_f32,
                       out_bf16);
}

/* Every strip, threads taking strips; 0 if a thread's buffers could not be allocated. */
static int strip_gemm(const struct planes *m, const struct quantized *qx, int n_tokens,
                      int n_rows, int n_cols, const float *acc_in, float *out_f32,
                      uint16_t *out_bf16) {
    const size_t panel_bytes = (CHUNK_COLS / 2) * 2 * sizeof(__m256i);
    const size_t y_bytes = (size_t)n_tokens * STRIP_ROWS * sizeof(float);
    long work = (long)n_rows * n_cols * n_tokens;
    int failed = 0;
#pragma omp parallel if (work >= PARALLEL_MIN_WORK) reduction(| : failed)
    {
        __m256i *panel = _mm_malloc(panel_bytes, 32);
        float *y = _mm_malloc(y_bytes, 32);
        failed = !panel || !y;
#pragma omp for schedule(static)
        for (int strip = 0; strip < n_rows / STRIP_ROWS; ++strip)
            if (panel && y)
                strip_products(m, qx, n_tokens, n_rows, n_cols, strip, panel, y, acc_in,
                               out_f32, out_bf16);
        _mm_free(panel);
        _mm_free(y);
    }
    return !failed;
}

static void fail_outputs(int n_tokens, int n_rows, float *out_f32, uint16_t *out_bf16) {
    /* out of memory: NaN outputs, which the caller's checks see, rather than stale ones */
    for (size_t i = 0; i < (size_t)n_tokens * (size_t)n_rows; ++i) {
        if (out_f32) out_f32[i] = NAN;
        if (out_bf16) out_bf16[i] = 0x7fc0u;
    }
}

static void products(const struct planes *m, const uint16_t *x, int n_tokens, int n_rows,
                     int n_cols, const float *acc_in, float *out_f32, uint16_t *out_bf16,
                     float *sum_x) {
    struct quantized qx;
    if (!quantize(x, n_tokens, n_cols, sum_x, &qx)) {
        fail_outputs(n_tokens, n_rows, out_f32, out_bf16);
        return;
    }
    const int two = m->packed_hi != NULL;
    long work = (long)n_rows * n_cols * n_tokens;
    if (n_tokens == 1) {
#pragma omp parallel for schedule(static) if (work >= PARALLEL_MIN_WORK)
        for (int block = 0; block < n_rows / ROW_BLOCK; ++block) {
            if (two)
                gemv_block(m, &qx, n_rows, n_cols, block, 1, acc_in, out_f32, out_bf16);
            else
                gemv_block(m, &qx, n_rows, n_cols, block, 0, acc_in, out_f32, out_bf16);
        }
        release(&qx);
        return;
    }
    if (n_tokens >= STRIP_MIN_TOKENS) {
        if (!strip_gemm(m, &qx, n_tokens, n_rows, n_cols, acc_in, out_f32, out_bf16))
            fail_outputs(n_tokens, n_rows, out_f32, out_bf16);
        release(&qx);
        return;
    }
    int halves = n_rows / 32, tiles = (n_tokens + TILE_TOKENS - 1) / TILE_TOKENS;
#pragma omp parallel for collapse(2) schedule(static) if (work >= PARALLEL_MIN_WORK)
    for (int h = 0; h < halves; ++h)
        for (int tile = 0; tile < tiles; ++tile) {
            int t0 = tile * TILE_TOKENS;
            int n = n_tokens - t0 < TILE_TOKENS ? n_tokens - t0 : TILE_TOKENS;
            if (two)
                half_block_tile(m, &qx, n_rows, n_cols, h / 2, h % 2, t0, n, 1, acc_in,
                                out_f32, out_bf16);
            else
                half_block_tile(m, &qx, n_rows, n_cols, h / 2, h % 2, t0, n, 0, acc_in,
                                out_f32, out_bf16);
        }
    release(&qx);
}

void fs_q4_gemv(const uint8_t *packed, const uint16_t *sz, const uint16_t *x, int n_rows,
                int n_cols, const float *acc_in, float *out_f32, uint16_t *out_bf16,
                float *sum_x) {
    struct planes m = {packed, NULL, sz};
    products(&m, x, 1, n_rows, n_cols, acc_in, out_f32, out_bf16, sum_x);
}

void fs_q4_gemm(const uint8_t *packed, const uint16_t *sz, const uint16_t *x, int n_tokens,
                int n_rows, int n_cols, const float *acc_in, float *out_f32, uint16_t *out_bf16,
                float *sum_x) {
    struct planes m = {packed, NULL, sz};
    products(&m, x, n_tokens, n_rows, n_cols, acc_in, out_f32, out_bf16, sum_x);
}

int fs_q4x2_available(void) { return 1; }

/* Y = X W^T for a two-plane matrix whose second plane's scales are 16 times the first's and
 * whose second zeros are 8 times its scales, in one pass over both planes' digits (Q5_*,
 * Q8_0: one product instead of two). */
void fs_q4x2_gemm(const uint8_t *packed, const uint16_t *sz, const uint8_t *packed_hi,
                  const uint16_t *sz_hi, const uint16_t *x, int n_tokens, int n_rows, int n_cols,
                  float *out_f32, uint16_t *out_bf16, float *sum_x) {
    (void)sz_hi; /* its zeros are 8 * its scales: no bias of its own */
    struct planes m = {packed, packed_hi, sz};
    products(&m, x, n_tokens, n_rows, n_cols, NULL, out_f32, out_bf16, sum_x);
}
#else
int fs_q4x2_available(void) { return 0; }

void fs_q4x2_gemm(const uint8_t *packed, const uint16_t *sz, const uint8_t *packed_hi,
                  const uint16_t *sz_hi, const uint16_t *x, int n_tokens, int n_rows, int n_cols,
                  float *out_f32, uint16_t *out_bf16, float *sum_x) {
    (void)packed; (void)sz; (void)packed_hi; (void)sz_hi; (void)x; (void)n_tokens;
    (void)n_rows; (void)n_cols; (void)out_f32; (void)out_bf16; (void)sum_x;
}
#endif
