/* Fused single-token (decode) operations of a transformer block, float32 inside.
 *
 * Everything between the weight matmuls of one decode step: RMSNorm with the residual add,
 * QK norm + RoPE + KV-cache write + grouped-query attention, and the gated activation. Matmul
 * inputs and outputs are bfloat16 (round to nearest even, as torch rounds), the residual
 * stream, the KV cache and all arithmetic are float32. Built and loaded by native_lib.py;
 * model.py keeps the same computation in torch as the reference and the fallback.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#define LANES 16
#define PARALLEL_MIN_WORK 65536L /* multiply-adds below which threads cost more */

static inline float bf16_to_f32(uint16_t h) {
    uint32_t u = (uint32_t)h << 16;
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

static inline uint16_t f32_to_bf16(float f) {
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x40u); /* quiet NaN */
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}

static inline uint16_t round_bf16(float f) { return f32_to_bf16(f); }

static float dot(const float *a, const float *b, int n) {
    float acc[LANES] = {0};
    int i = 0;
    for (; i + LANES <= n; i += LANES)
        for (int l = 0; l < LANES; ++l) acc[l] += a[i + l] * b[i + l];
    float s = 0.0f;
    for (int l = 0; l < LANES; ++l) s += acc[l];
    for (; i < n; ++i) s += a[i] * b[i];
    return s;
}

/* x <- x * rsqrt(mean(x^2) + eps) * w, in place. */
static void rms_norm_inplace(float *x, const float *w, int n, float eps) {
    float r = 1.0f / sqrtf(dot(x, x, n) / (float)n + eps);
    for (int i = 0; i < n; ++i) x[i] = x[i] * r * w[i];
}

/* hidden += delta (RMS-normed with post_w first if post_w is given; skipped if delta is NULL),
 * then out = bf16(rms_norm(hidden) * w). scratch holds d floats. */
void fs_add_norm(float *hidden, const uint16_t *delta, const float *post_w, const float *w,
                 int d, float eps, float *scratch, uint16_t *out) {
    if (delta) {
        for (int i = 0; i < d; ++i) scratch[i] = bf16_to_f32(delta[i]);
        if (post_w) rms_norm_inplace(scratch, post_w, d, eps);
        for (int i = 0; i < d; ++i) hidden[i] += scratch[i];
    }
    memcpy(scratch, hidden, (size_t)d * sizeof(float));
    rms_norm_inplace(scratch, w, d, eps);
    for (int i = 0; i < d; ++i) out[i] = f32_to_bf16(scratch[i]);
}

/* Half-split RoPE on the first 2*half dims of one head. */
static void rope(float *x, const float *cos_p, const float *sin_p, int half) {
    for (int i = 0; i < half; ++i) {
        float lo = x[i], hi = x[i + half];
        x[i] = lo * cos_p[i] - hi * sin_p[i];
        x[i + half] = lo * sin_p[i] + hi * cos_p[i];
    }
}

/* Softmax weights below exp(-64) (relative to the largest) are set to 0: they cannot change
 * a float32 sum, and keeping them makes denormal products, which are ~100x slower. */
#define EXP_CUTOFF -64.0f

/* p[t] <- exp(p[t] - top) for t in t0..end-1 (all arguments <= 0): 2^n * exp(r) with
 * |r| <= ln2/2 and a degree-7 Taylor polynomial (relative error about 2e-7); branch-free so
 * the compiler vectorizes it. */
static void exp_shifted(float *p, int t0, int end, float top) {
    const float log2e = 1.44269504088896341f, ln2_hi = 0.693359375f, ln2_lo = -2.12194440e-4f;
    const float round_magic = 12582912.0f; /* 1.5 * 2^23: adding it rounds to an integer */
    for (int t = t0; t < end; ++t) {
        float x = p[t] - top;
        float kept = x < EXP_CUTOFF ? 0.0f : 1.0f;
        x = x < EXP_CUTOFF ? EXP_CUTOFF : x;
        float n = (x * log2e + round_magic) - round_magic;
        float r = (x - n * ln2_hi) - n * ln2_lo;
        float poly = 1.0f + r * (1.0f + r * (0.5f + r * (1.0f / 6 + r * (1.0f / 24 + r * (
            1.0f / 120 + r * (1.0f / 720 + r * (1.0f / 5040)))))));
        int32_t bits = ((int32_t)n + 127) << 23;
        float two_n;
        memcpy(&two_n, &bits, sizeof two_n);
        p[t] = kept * poly * two_n;
    }
}

/* Softmax attention of one query head over keys/values t0..pos; out is bf16 hd values. */
static void attend_head(const float *q, const float *keys, const float *values, int hd, int t0,
                        int pos, float scale, float *p, float *acc, uint16_t *out) {
    float top = -INFINITY;
    for (int t = t0; t <= pos; ++t) {
        p[t] = dot(q, keys + (size_t)t * hd, hd) * scale;
        if (p[t] > top) top = p[t];
    }
    exp_shifted(p, t0, pos + 1, top);
    float total = 0.0f;
    for (int t = t0; t <= pos; ++t) total += p[t];
    for (int i = 0; i < hd; ++i) acc[i] = 0.0f;
    for (int t = t0; t <= pos; ++t) {
        float weight = p[t] / total;
        const float *v = values + (size_t)t * hd;
        for (int i = 0; i < hd; ++i) acc[i] += weight * v[i];
    }
    for (int i = 0; i < hd; ++i) out[i] = f32_to_bf16(acc[i]);
}

/* One decode token: qkv is bf16 (n_heads + 2 n_kv) x hd; K/V caches are float32
 * (n_kv, cap, hd); the token sits at position pos; keys t0..pos are attended, with
 * t0 = pos - window + 1 for a sliding window. out is bf16 n_heads x hd. Query heads
 * h*g .. h*g+g-1 share KV head h. scratch holds n_heads * (2 * hd + cap) floats. */
void fs_attention(const uint16_t *qkv, int n_heads, int n_kv, int hd, const float *q_norm,
                  const float *k_norm, float eps, const float *cos_p, const float *sin_p,
                  int half, float *k_cache, float *v_cache, int cap, int pos, int window,
                  float scale, float *scratch, uint16_t *out) {
    float *q = scratch;
    float *acc = q + (size_t)n_heads * hd;
    float *p = acc + (size_t)n_heads * hd;
    for (int i = 0; i < n_heads * hd; ++i) q[i] = bf16_to_f32(qkv[i]);
    for (int h = 0; h < n_heads; ++h) {
        if (q_norm) rms_norm_inplace(q + (size_t)h * hd, q_norm, hd, eps);
        rope(q + (size_t)h * hd, cos_p, sin_p, half);
    }
    for (int h = 0; h < n_kv; ++h) {
        float *k = k_cache + ((size_t)h * cap + pos) * hd;
        float *v = v_cache + ((size_t)h * cap + pos) * hd;
        const uint16_t *k_in = qkv + (size_t)(n_heads + h) * hd;
        const uint16_t *v_in = qkv + (size_t)(n_heads + n_kv + h) * hd;
        for (int i = 0; i < hd; ++i) {
            k[i] = bf16_to_f32(k_in[i]);
            v[i] = bf16_to_f32(v_in[i]);
        }
        if (k_norm) rms_norm_inplace(k, k_norm, hd, eps);
        rope(k, cos_p, sin_p, half);
    }
    int t0 = (window > 0 && pos >= window) ? pos - window + 1 : 0;
    int group = n_heads / n_kv;
    long work = (long)n_heads * (pos - t0 + 1) * hd;
#pragma omp parallel for schedule(static) if (work > PARALLEL_MIN_WORK)
    for (int h = 0; h < n_heads; ++h) {
        size_t kv = (size_t)(h / group) * cap * hd;
        attend_head(q + (size_t)h * hd, k_cache + kv, v_cache + kv, hd, t0, pos, scale,
                    p + (size_t)h * cap, acc + (size_t)h * hd, out + (size_t)h * hd);
    }
}

/* out = bf16(bf16(act(gate)) * up) for gate_up = [gate | up] in bf16; act is SiLU or, with
 * gelu set, tanh-approximated GELU (torch computes each bf16 op in float and rounds). */
void fs_glu(const uint16_t *gate_up, int ffn, int gelu, uint16_t *out) {
    const float k = 0.7978845608028654f; /* sqrt(2 / pi) */
    for (int i = 0; i < ffn; ++i) {
        float g = bf16_to_f32(gate_up[i]);
        float a = gelu ? 0.5f * g * (1.0f + tanhf(k * (g + 0.044715f * g * g * g)))
                       : g / (1.0f + expf(-g));
        float prod = bf16_to_f32(round_bf16(a)) * bf16_to_f32(gate_up[ffn + i]);
        out[i] = f32_to_bf16(prod);
    }
}

/* ---- int4 matrix times one bfloat16 vector, on torch's packed int4 layout ----------------
 * packed is (N/64, K, 32) bytes: byte j of column k of row block b holds the digit of row
 * b*64+j (low nibble) and of row b*64+32+j (high nibble); scales_zeros is (K/32, N, 2) bf16
 * with w = (digit - 8) * scale + zero per group of 32 columns (torch's
 * _weight_int4pack_mm_for_cpu format). y = W x (+ acc_in) is accumulated in float32 and
 * stored to out_f32 and/or out_bf16 (either may be NULL). Needs AVX512-BF16 and VBMI: two
 * columns of 16 rows become one register of bf16 pairs (128 + digit, exactly) for one
 * vdpbf16ps against the broadcast pair x[k], x[k+1]; per group, y += s * acc +
 * (z - 136 s) * sum(x) undoes the 128 + 8 bias. */
#if defined(__AVX512BF16__) && defined(__AVX512VBMI__) && defined(__AVX512BW__)
#include <immintrin.h>

int fs_gemv_available(void) { return 1; }

#define PREFETCH_BYTES 2048 /* how far ahead the weight stream is fetched (measured) */

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

static void gemv_block(const uint8_t *packed, const uint16_t *sz, const uint16_t *x,
                       const float *sum_x, int n_rows, int n_cols, int block, const float *acc_in,
                       float *out_f32, uint16_t *out_bf16) {
    const __m512i low4 = _mm512_set1_epi8(0x0f), high_byte = _mm512_set1_epi8(0x43);
    const __m512i idx0 = pair_index(0), idx1 = pair_index(16);
    __m512 y[4];
    for (int r = 0; r < 4; ++r) y[r] = _mm512_setzero_ps();
    const uint8_t *base = packed + (size_t)block * n_cols * 32;
    if ((block + 1) * 64 < n_rows) /* the next block's scales sit n_rows * 4 bytes apart */
        for (int g = 0; g < n_cols / 32; ++g)
            for (int line = 0; line < 256; line += 64)
                _mm_prefetch((const char *)(sz + ((size_t)g * n_rows + (size_t)(block + 1) * 64) * 2) + line,
                             _MM_HINT_T0);
    for (int g = 0; g < n_cols / 32; ++g) {
        __m512 acc[4];
        for (int r = 0; r < 4; ++r) acc[r] = _mm512_setzero_ps();
        for (int c = 0; c < 16; ++c) {
            int k = g * 32 + 2 * c;
            __m512i bytes = _mm512_loadu_si512(base + (size_t)k * 32);
            _mm_prefetch((const char *)(base + (size_t)k * 32 + PREFETCH_BYTES), _MM_HINT_T0);
            __m512i lo = _mm512_and_si512(bytes, low4);
            __m512i hi = _mm512_and_si512(_mm512_srli_epi16(bytes, 4), low4);
            int32_t pair;
            memcpy(&pair, x + k, sizeof pair);
            __m512bh xs = (__m512bh)_mm512_set1_epi32(pair);
            acc[0] = _mm512_dpbf16_ps(acc[0], (__m512bh)_mm512_permutex2var_epi8(lo, idx0, high_byte), xs);
            acc[1] = _mm512_dpbf16_ps(acc[1], (__m512bh)_mm512_permutex2var_epi8(lo, idx1, high_byte), xs);
            acc[2] = _mm512_dpbf16_ps(acc[2], (__m512bh)_mm512_permutex2var_epi8(hi, idx0, high_byte), xs);
            acc[3] = _mm512_dpbf16_ps(acc[3], (__m512bh)_mm512_permutex2var_epi8(hi, idx1, high_byte), xs);
        }
        const uint16_t *group_sz = sz + ((size_t)g * n_rows + (size_t)block * 64) * 2;
        __m512 gsum = _mm512_set1_ps(sum_x[g]);
        for (int r = 0; r < 4; ++r) {
            __m512i pairs = _mm512_loadu_si512(group_sz + 32 * r);
            __m512 s = _mm512_castsi512_ps(_mm512_slli_epi32(pairs, 16));
            __m512 z = _mm512_castsi512_ps(_mm512_and_si512(pairs, _mm512_set1_epi32((int)0xffff0000u)));
            __m512 bias = _mm512_fnmadd_ps(_mm512_set1_ps(136.0f), s, z);
            y[r] = _mm512_fmadd_ps(s, acc[r], y[r]);
            y[r] = _mm512_fmadd_ps(bias, gsum, y[r]);
        }
    }
    for (int r = 0; r < 4; ++r) {
        size_t row = (size_t)block * 64 + 16 * r;
        if (acc_in) y[r] = _mm512_add_ps(y[r], _mm512_loadu_ps(acc_in + row));
        if (out_f32) _mm512_storeu_ps(out_f32 + row, y[r]);
        if (out_bf16) {
            float tmp[16];
            _mm512_storeu_ps(tmp, y[r]);
            for (int i = 0; i < 16; ++i) out_bf16[row + i] = f32_to_bf16(tmp[i]);
        }
    }
}

void fs_q4_gemv(const uint8_t *packed, const uint16_t *sz, const uint16_t *x, int n_rows,
                int n_cols, const float *acc_in, float *out_f32, uint16_t *out_bf16,
                float *sum_x) {
    for (int g = 0; g < n_cols / 32; ++g) {
        float s = 0.0f;
        for (int i = 0; i < 32; ++i) s += bf16_to_f32(x[g * 32 + i]);
        sum_x[g] = s;
    }
#pragma omp parallel for schedule(static) if (n_rows >= 256)
    for (int block = 0; block < n_rows / 64; ++block)
        gemv_block(packed, sz, x, sum_x, n_rows, n_cols, block, acc_in, out_f32, out_bf16);
}
#else
int fs_gemv_available(void) { return 0; }

void fs_q4_gemv(const uint8_t *packed, const uint16_t *sz, const uint16_t *x, int n_rows,
                int n_cols, const float *acc_in, float *out_f32, uint16_t *out_bf16,
                float *sum_x) {
    (void)packed; (void)sz; (void)x; (void)n_rows; (void)n_cols; (void)acc_in;
    (void)out_f32; (void)out_bf16; (void)sum_x;
}
#endif
