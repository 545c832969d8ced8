/* int4 matrix products on torch's packed int4 layout, bfloat16 inputs, float32 accumulation.
 *
 * packed is (N/64, K, 32) bytes: byte j of column k of row block b holds the digit of row
 * b*64+j (low nibble) and of row b*64+32+j (high nibble); scales_zeros is (K/32, N, 2) bf16
 * with w = (digit - 8) * scale + zero per group of 32 columns (torch's
 * _weight_int4pack_mm_for_cpu format). Needs AVX512-BF16 and VBMI: two columns of 16 rows
 * become one register of bf16 pairs (128 + digit, exactly) for one vdpbf16ps against the
 * broadcast pair x[k], x[k+1]; per group, y += s * acc + (z - 136 s) * sum(x) undoes the
 * 128 + 8 bias.
 *
 * CPUs with AVX2 and FMA only take q4_avx2.c (int16 inputs); others have no native kernels.
 *
 * fs_q4_gemv multiplies by one vector (decode); fs_q4_gemm by a few to a few hundred
 * (prefill), converting each weight register once for a tile of tokens. Both compute
 * y = W x (+ acc_in) and store it to out_f32 and/or out_bf16 (either may be NULL).
 */
#include <stdint.h>
#include <string.h>

#include "bf16.h"

#define ROW_BLOCK 64
#define GROUP 32

#if defined(__AVX512BF16__) && defined(__AVX512VBMI__) && defined(__AVX512BW__)
#include <immintrin.h>

/* sum_x[t * (K/32) + g] = sum of the 32 inputs of group g of token t. */
static void group_sums(const uint16_t *x, int n_tokens, int n_cols, float *sum_x) {
    int groups = n_cols / GROUP;
    for (int t = 0; t < n_tokens; ++t)
        for (int g = 0; g < groups; ++g) {
            float s = 0.0f;
            const uint16_t *xg = x + (size_t)t * n_cols + (size_t)g * GROUP;
            for (int i = 0; i < GROUP; ++i) s += bf16_to_f32(xg[i]);
            sum_x[(size_t)t * groups + g] = s;
        }
}

int fs_gemv_available(void) { return 1; }

#define PREFETCH_BYTES 2048 /* how far ahead the weight stream is fetched (measured) */
#define TILE_TOKENS 4       /* tokens sharing one converted weight register (16 accumulators) */

static __m512i pair_index(int first_row) {
    uint8_t idx[64];
    for (int i = 0; i < 16; ++i) {
        idx[4 * i] = (uint8_t)(first_row + i);          /* column k, from the digits */
        idx[4 * i + 1] = 64;                            /* 0x43, from the constant */
        idx[4 * i + 2] = (uint8_t)(32 + first_row + i); /* column k + 1 */
        idx[4 * i + 3] = 64;
    }
    return _mm512_loadu_si512(idx);
}

/* The four registers of bf16 pairs (128 + digit) for columns k, k+1 of 64 rows. */
struct weight_pairs { __m512bh w[4]; };

static inline struct weight_pairs load_pairs(const uint8_t *column_pair, __m512i idx0,
                                             __m512i idx1) {
    const __m512i low4 = _mm512_set1_epi8(0x0f), high_byte = _mm512_set1_epi8(0x43);
    __m512i bytes = _mm512_loadu_si512(column_pair);
    __m512i lo = _mm512_and_si512(bytes, low4);
    __m512i hi = _mm512_and_si512(_mm512_srli_epi16(bytes, 4), low4);
    struct weight_pairs p;
    p.w[0] = (__m512bh)_mm512_permutex2var_epi8(lo, idx0, high_byte);
    p.w[1] = (__m512bh)_mm512_permutex2var_epi8(lo, idx1, high_byte);
    p.w[2] = (__m512bh)_mm512_permutex2var_epi8(hi, idx0, high_byte);
    p.w[3] = (__m512bh)_mm512_permutex2var_epi8(hi, idx1, high_byte);
    return p;
}

static inline __m512bh broadcast_pair(const uint16_t *x) {
    int32_t pair;
    memcpy(&pair, x, sizeof pair);
    return (__m512bh)_mm512_set1_epi32(pair);
}

/* Scale s and bias z - 136 s of 16 rows from their (scale, zero) bf16 pairs. */
static inline void scale_bias(const uint16_t *pairs16, __m512 *s, __m512 *bias) {
    __m512i pairs = _mm512_loadu_si512(pairs16);
    *s = _mm512_castsi512_ps(_mm512_slli_epi32(pairs, 16));
    __m512 z = _mm512_castsi512_ps(_mm512_and_si512(pairs, _mm512_set1_epi32((int)0xffff0000u)));
    *bias = _mm512_fnmadd_ps(_mm512_set1_ps(136.0f), *s, z);
}

static void store_rows(__m512 y, size_t at, const float *acc_in, float *out_f32,
                       uint16_t *out_bf16) {
    if (acc_in) y = _mm512_add_ps(y, _mm512_loadu_ps(acc_in + at));
    if (out_f32) _mm512_storeu_ps(out_f32 + at, y);
    if (out_bf16) {
        float tmp[16];
        _mm512_storeu_ps(tmp, y);
        for (int i = 0; i < 16; ++i) out_bf16[at + i] = f32_to_bf16(tmp[i]);
    }
}

static void gemv_block(const uint8_t *packed, const uint16_t *sz, const uint16_t *x,
                       const float *sum_x, int n_rows, int n_cols, int block, const float *acc_in,
                       float *out_f32, uint16_t *out_bf16) {
    const __m512i idx0 = pair_index(0), idx1 = pair_index(16);
    __m512 y[4];
    for (int r = 0; r < 4; ++r) y[r] = _mm512_setzero_ps();
    const uint8_t *base = packed + (size_t)block * n_cols * 32;
    if ((block + 1) * ROW_BLOCK < n_rows) /* the next block's scales sit n_rows * 4 bytes apart */
        for (int g = 0; g < n_cols / GROUP; ++g)
            for (int line = 0; line < 256; line += 64)
                _mm_prefetch((const char *)(sz + ((size_t)g * n_rows + (size_t)(block + 1) * ROW_BLOCK) * 2) + line,
                             _MM_HINT_T0);
    for (int g = 0; g < n_cols / GROUP; ++g) {
        __m512 acc[4];
        for (int r = 0; r < 4; ++r) acc[r] = _mm512_setzero_ps();
        for (int c = 0; c < 16; ++c) {
            int k = g * GROUP + 2 * c;
            _mm_prefetch((const char *)(base + (size_t)k * 32 + PREFETCH_BYTES), _MM_HINT_T0);
            struct weight_pairs p = load_pairs(base + (size_t)k * 32, idx0, idx1);
            __m512bh xs = broadcast_pair(x + k);
            for (int r = 0; r < 4; ++r) acc[r] = _mm512_dpbf16_ps(acc[r], p.w[r], xs);
        }
        const uint16_t *group_sz = sz + ((size_t)g * n_rows + (size_t)block * ROW_BLOCK) * 2;
        __m512 gsum = _mm512_set1_ps(sum_x[g]);
        for (int r = 0; r < 4; ++r) {
            __m512 s, bias;
            scale_bias(group_sz + 32 * r, &s, &bias);
            y[r] = _mm512_fmadd_ps(s, acc[r], y[r]);
            y[r] = _mm512_fmadd_ps(bias, gsum, y[r]);
        }
    }
    for (int r = 0; r < 4; ++r)
        store_rows(y[r], (size_t)block * ROW_BLOCK + 16 * r, acc_in, out_f32, out_bf16);
}

void fs_q4_gemv(const uint8_t *packed, const uint16_t *sz, const uint16_t *x, int n_rows,
                int n_cols, const float *acc_in, float *out_f32, uint16_t *out_bf16,
                float *sum_x) {
    group_sums(x, 1, n_cols, sum_x);
#pragma omp parallel for schedule(static) if (n_rows >= 256)
    for (int block = 0; block < n_rows / ROW_BLOCK; ++block)
        gemv_block(packed, sz, x, sum_x, n_rows, n_cols, block, acc_in, out_f32, out_bf16);
}

/* Rows block*64 .. +63 for tokens t0 .. t0+n-1 (n <= TILE_TOKENS; missing tokens repeat the
 * last one and are not stored). y stays in float32 registers per group and in y_tile across
 * groups. */
static void gemm_tile(const uint8_t *packed, const uint16_t *sz, const uint16_t *x,
                      const float *sum_x, int n_rows, int n_cols, int block, int t0, int n,
                      const float *acc_in, float *out_f32, uint16_t *out_bf16) {
    const __m512i idx0 = pair_index(0), idx1 = pair_index(16);
    const int groups = n_cols / GROUP;
    const uint16_t *xt[TILE_TOKENS];
    const float *st[TILE_TOKENS];
    for (int t = 0; t < TILE_TOKENS; ++t) {
        int token = t0 + (t < n ? t : n - 1);
        xt[t] = x + (size_t)token * n_cols;
        st[t] = sum_x + (size_t)token * groups;
    }
    __m512 y_tile[TILE_TOKENS][4];
    for (int t = 0; t < TILE_TOKENS; ++t)
        for (int r = 0; r < 4; ++r) y_tile[t][r] = _mm512_setzero_ps();
    const uint8_t *base = packed + (size_t)block * n_cols * 32;
    for (int g = 0; g < groups; ++g) {
        __m512 acc[TILE_TOKENS][4];
        for (int t = 0; t < TILE_TOKENS; ++t)
            for (int r = 0; r < 4; ++r) acc[t][r] = _mm512_setzero_ps();
        for (int c = 0; c < 16; ++c) {
            int k = g * GROUP + 2 * c;
            struct weight_pairs p = load_pairs(base + (size_t)k * 32, idx0, idx1);
#pragma GCC unroll 4
            for (int t = 0; t < TILE_TOKENS; ++t) {
                __m512bh xs = broadcast_pair(xt[t] + k);
                for (int r = 0; r < 4; ++r) acc[t][r] = _mm512_dpbf16_ps(acc[t][r], p.w[r], xs);
            }
        }
        const uint16_t *group_sz = sz + ((size_t)g * n_rows + (size_t)block * ROW_BLOCK) * 2;
        for (int r = 0; r < 4; ++r) {
            __m512 s, bias;
            scale_bias(group_sz + 32 * r, &s, &bias);
            for (int t = 0; t < TILE_TOKENS; ++t) {
                y_tile[t][r] = _mm512_fmadd_ps(s, acc[t][r], y_tile[t][r]);
                y_tile[t][r] = _mm512_fmadd_ps(bias, _mm512_set1_ps(st[t][g]), y_tile[t][r]);
            }
        }
    }
    for (int t = 0; t < n; ++t)
        for (int r = 0; r < 4; ++r)
            store_rows(y_tile[t][r], (size_t)(t0 + t) * n_rows + (size_t)block * ROW_BLOCK + 16 * r,
                       acc_in, out_f32, out_bf16);
}

/* Y = X W^T for X (n_tokens, K) bf16; Y, acc_in are (n_tokens, N); sum_x holds
 * n_tokens * K/32 floats. */
void fs_q4_gemm(const uint8_t *packed, const uint16_t *sz, const uint16_t *x, int n_tokens,
                int n_rows, int n_cols, const float *acc_in, float *out_f32, uint16_t *out_bf16,
                float *sum_x) {
    group_sums(x, n_tokens, n_cols, sum_x);
    int blocks = n_rows / ROW_BLOCK, tiles = (n_tokens + TILE_TOKENS - 1) / TILE_TOKENS;
#pragma omp parallel for collapse(2) schedule(static)
    for (int block = 0; block < blocks; ++block)
        for (int tile = 0; tile < tiles; ++tile) {
            int t0 = tile * TILE_TOKENS;
            int n = n_tokens - t0 < TILE_TOKENS ? n_tokens - t0 : TILE_TOKENS;
            gemm_tile(packed, sz, x, sum_x, n_rows, n_cols, block, t0, n, acc_in, out_f32,
                      out_bf16);
        }
}
#elif !(defined(__AVX2__) && defined(__FMA__)) /* those CPUs take q4_avx2.c */
int fs_gemv_available(void) { return 0; }

void fs_q4_gemv(const uint8_t *packed, const uint16_t *sz, const uint16_t *x, int n_rows,
                int n_cols, const float *acc_in, float *out_f32, uint16_t *out_bf16,
                float *sum_x) {
    (void)packed; (void)sz; (void)x; (void)n_rows; (void)n_cols; (void)acc_in;
    (void)out_f32; (void)out_bf16; (void)sum_x;
}

void fs_q4_gemm(const uint8_t *packed, const uint16_t *sz, const uint16_t *x, int n_tokens,
                int n_rows, int n_cols, const float *acc_in, float *out_f32, uint16_t *out_bf16,
                float *sum_x) {
    (void)packed; (void)sz; (void)x; (void)n_tokens; (void)n_rows; (void)n_cols;
    (void)acc_in; (void)out_f32; (void)out_bf16; (void)sum_x;
}
#endif
