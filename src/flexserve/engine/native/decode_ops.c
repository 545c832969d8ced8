/* Fused operations of a transformer block, float32 inside: for one decode token, and for the
 * rows of a prefill (the same operations per row, threaded across rows).
 *
 * Everything between the weight matmuls of a block: RMSNorm with the residual add,
 * QK norm + RoPE + KV-cache write + grouped-query attention, and the gated activation. Matmul
 * inputs and outputs are bfloat16 (round to nearest even, as torch rounds), the residual
 * stream, the KV cache and all arithmetic are float32. Built and loaded by build.py;
 * model.py keeps the same computation in torch as the reference and the fallback.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "bf16.h"

#define LANES 16
#define PARALLEL_MIN_WORK 65536L /* multiply-adds below which threads cost more */

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
 * then out = bf16(rms_norm(hidden) * w) (skipped if w is NULL). scratch holds d floats. */
void fs_add_norm(float *hidden, const uint16_t *delta, const float *post_w, const float *w,
                 int d, float eps, float *scratch, uint16_t *out) {
    if (delta) {
        for (int i = 0; i < d; ++i) scratch[i] = bf16_to_f32(delta[i]);
        if (post_w) rms_norm_inplace(scratch, post_w, d, eps);
        for (int i = 0; i < d; ++i) hidden[i] += scratch[i];
    }
    if (!w) return;
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

/* K and V heads of one qkv row (bf16) into the caches at position pos: K normed and rotated. */
static void write_kv(const uint16_t *row, int n_heads, int n_kv, int hd, const float *k_norm,
                     float eps, const float *cos_p, const float *sin_p, int half, float *k_cache,
                     float *v_cache, int cap, int pos) {
    for (int h = 0; h < n_kv; ++h) {
        float *k = k_cache + ((size_t)h * cap + pos) * hd;
        float *v = v_cache + ((size_t)h * cap + pos) * hd;
        const uint16_t *k_in = row + (size_t)(n_heads + h) * hd;
        const uint16_t *v_in = row + (size_t)(n_heads + n_kv + h) * hd;
        for (int i = 0; i < hd; ++i) {
            k[i] = bf16_to_f32(k_in[i]);
            v[i] = bf16_to_f32(v_in[i]);
        }
        if (k_norm) rms_norm_inplace(k, k_norm, hd, eps);
        rope(k, cos_p, sin_p, half);
    }
}

/* Softmax weights below exp(-64) (relative to the largest) are set to 0: they cannot change
 * a float32 sum, and keeping them makes denormal products, which are ~100x slower. */
#define EXP_CUTOFF -64.0f

/* p[t] <- exp(p[t] - top) for t in t0..end-1 (all arguments <= 0): 2^n * exp(r) with
 * |r| <= ln2/2 and a degree-7 Taylor polynomial (relative error about 2e-7); branch-free so
 * the compiler vectorizes it (with -fno-trapping-math). */
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

#if defined(__AVX2__) && defined(__FMA__)
#include <immintrin.h>
#define KEY_BLOCK 8  /* keys scored together: 8 dot products reduced into one register */
#define VALUE_DIMS 64 /* value dims accumulated in registers across all keys */

/* p[t] = scale * q . keys[t] for t in t0..pos (hd a multiple of 8); returns the largest. */
static float scores(const float *q, const float *keys, int hd, int t0, int pos, float scale,
                    float *p) {
    __m256 top = _mm256_set1_ps(-INFINITY);
    int t = t0;
    for (; t + KEY_BLOCK - 1 <= pos; t += KEY_BLOCK) {
        __m256 s[KEY_BLOCK];
        for (int j = 0; j < KEY_BLOCK; ++j) s[j] = _mm256_setzero_ps();
        for (int i = 0; i < hd; i += 8) {
            __m256 qv = _mm256_loadu_ps(q + i);
            for (int j = 0; j < KEY_BLOCK; ++j)
                s[j] = _mm256_fmadd_ps(qv, _mm256_loadu_ps(keys + (size_t)(t + j) * hd + i), s[j]);
        }
        /* transpose-reduce: lane j of the result is the sum of s[j] */
        __m256 a = _mm256_hadd_ps(_mm256_hadd_ps(s[0], s[1]), _mm256_hadd_ps(s[2], s[3]));
        __m256 b = _mm256_hadd_ps(_mm256_hadd_ps(s[4], s[5]), _mm256_hadd_ps(s[6], s[7]));
        __m256 sums = _mm256_add_ps(_mm256_permute2f128_ps(a, b, 0x20),
                                    _mm256_permute2f128_ps(a, b, 0x31));
        sums = _mm256_mul_ps(sums, _mm256_set1_ps(scale));
        _mm256_storeu_ps(p + t, sums);
        top = _mm256_max_ps(top, sums);
    }
    float best = -INFINITY, lanes[8];
    _mm256_storeu_ps(lanes, top);
    for (int j = 0; j < 8; ++j) best = lanes[j] > best ? lanes[j] : best;
    for (; t <= pos; ++t) {
        p[t] = dot(q, keys + (size_t)t * hd, hd) * scale;
        if (p[t] > best) best = p[t];
    }
    return best; /* a NaN score is not the largest, but reaches the outputs through p */
}

/* acc = sum over t0..pos of p[t] * values[t] (hd a multiple of 8), VALUE_DIMS at a time. */
static void weighted_values(const float *p, const float *values, int hd, int t0, int pos,
                            float *acc) {
    for (int i0 = 0; i0 < hd; i0 += VALUE_DIMS) {
        int vectors = (hd - i0 < VALUE_DIMS ? hd - i0 : VALUE_DIMS) / 8;
        __m256 a[VALUE_DIMS / 8];
        for (int j = 0; j < VALUE_DIMS / 8; ++j) a[j] = _mm256_setzero_ps();
        if (vectors == VALUE_DIMS / 8) {
            for (int t = t0; t <= pos; ++t) {
                __m256 w = _mm256_broadcast_ss(p + t);
                const float *v = values + (size_t)t * hd + i0;
                for (int j = 0; j < VALUE_DIMS / 8; ++j)
                    a[j] = _mm256_fmadd_ps(w, _mm256_loadu_ps(v + 8 * j), a[j]);
            }
        } else {
            for (int t = t0; t <= pos; ++t) {
                __m256 w = _mm256_broadcast_ss(p + t);
                const float *v = values + (size_t)t * hd + i0;
                for (int j = 0; j < vectors; ++j)
                    a[j] = _mm256_fmadd_ps(w, _mm256_loadu_ps(v + 8 * j), a[j]);
            }
        }
        for (int j = 0; j < vectors; ++j) _mm256_storeu_ps(acc + i0 + 8 * j, a[j]);
    }
}
#define VECTOR_ATTENTION 1
#else
#define VECTOR_ATTENTION 0
#endif

/* Softmax attention of one query head over keys/values t0..pos; out is bf16 hd values. */
static void attend_head(const float *q, const float *keys, const float *values, int hd, int t0,
                        int pos, float scale, float *p, float *acc, uint16_t *out) {
    const int vector = VECTOR_ATTENTION && hd % 8 == 0;
    float top = -INFINITY;
#if VECTOR_ATTENTION
    if (vector) top = scores(q, keys, hd, t0, pos, scale, p);
#endif
    if (!vector) {
        for (int t = t0; t <= pos; ++t) {
            p[t] = dot(q, keys + (size_t)t * hd, hd) * scale;
            if (p[t] > top) top = p[t];
        }
    }
    exp_shifted(p, t0, pos + 1, top);
    float total = 0.0f;
    for (int t = t0; t <= pos; ++t) total += p[t];
    for (int t = t0; t <= pos; ++t) p[t] = p[t] / total;
#if VECTOR_ATTENTION
    if (vector) weighted_values(p, values, hd, t0, pos, acc);
#endif
    if (!vector) {
        for (int i = 0; i < hd; ++i) acc[i] = 0.0f;
        for (int t = t0; t <= pos; ++t) {
            const float *v = values + (size_t)t * hd;
            for (int i = 0; i < hd; ++i) acc[i] += p[t] * v[i];
        }
    }
    for (int i = 0; i < hd; ++i) out[i] = f32_to_bf16(acc[i]);
}

/* The first key a query at pos sees: 0, or pos - window + 1 under a sliding window. */
static inline int first_key(int pos, int window) {
    return (window > 0 && pos >= window) ? pos - window + 1 : 0;
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
    write_kv(qkv, n_heads, n_kv, hd, k_norm, eps, cos_p, sin_p, half, k_cache, v_cache, cap, pos);
    int t0 = first_key(pos, window);
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

/* Rows ids[0..n-1] of an int4-plane matrix in float32 (an embedding lookup): planes packed in
 * row blocks of row_block rows ((N / row_block, K, row_block / 2) bytes: byte j of column k
 * holds rows j and j + row_block / 2 as low and high nibbles), with bf16 (scale, zero) pairs
 * (K / 32, N, 2) per plane; value = sum over planes of (digit - 8) * scale + zero, in plane
 * order from 0, as Int4Matrix.rows computes it. */
void fs_int4_rows(const uint8_t *const *packed, const uint16_t *const *sz, int n_planes,
                  int row_block, int n_rows, int n_cols, const int64_t *ids, int n,
                  float *out) {
    const int half = row_block / 2;
    for (int i = 0; i < n; ++i) {
        int64_t row = ids[i];
        size_t block = (size_t)(row / row_block);
        int within = (int)(row % row_block), shift = within >= half ? 4 : 0;
        float *o = out + (size_t)i * n_cols;
        for (int k = 0; k < n_cols; ++k) o[k] = 0.0f;
        for (int plane = 0; plane < n_planes; ++plane) {
            const uint8_t *column = packed[plane] + block * n_cols * half + within % half;
            for (int g = 0; g < n_cols / 32; ++g) {
                const uint16_t *pair = sz[plane] + ((size_t)g * n_rows + (size_t)row) * 2;
                float scale = bf16_to_f32(pair[0]), zero = bf16_to_f32(pair[1]);
                for (int k = 32 * g; k < 32 * g + 32; ++k) {
                    float digit = (float)((column[(size_t)k * half] >> shift) & 0x0f);
                    o[k] += (digit - 8.0f) * scale + zero;
                }
            }
        }
    }
}

/* ----- prefill: n rows (tokens) at once ------------------------------------------------- */

/* fs_add_norm on each of n rows of d (delta may be NULL; w NULL: no output); scratch holds
 * n * d floats. */
void fs_add_norm_rows(float *hidden, const uint16_t *delta, const float *post_w, const float *w,
                      int n, int d, float eps, float *scratch, uint16_t *out) {
#pragma omp parallel for schedule(static) if ((long)n * d >= PARALLEL_MIN_WORK / 4)
    for (int t = 0; t < n; ++t) {
        size_t at = (size_t)t * d;
        fs_add_norm(hidden + at, delta ? delta + at : NULL, post_w, w, d, eps, scratch + at,
                    w ? out + at : NULL);
    }
}

/* n rows of qkv (bf16, (n_heads + 2 n_kv) x hd each) at positions start .. start+n-1: Q heads
 * normed and rotated into q (float32, n_heads x n x hd), K heads normed, rotated and written
 * with the V heads into the caches (float32 (n_kv, cap, hd)). cos/sin: the RoPE table rows of
 * the n positions (n x half floats each). */
void fs_qkv_rows(const uint16_t *qkv, int n, int n_heads, int n_kv, int hd, const float *q_norm,
                 const float *k_norm, float eps, const float *cos_rows, const float *sin_rows,
                 int half, float *k_cache, float *v_cache, int cap, int start, float *q) {
    const int width = (n_heads + 2 * n_kv) * hd;
#pragma omp parallel for schedule(static) if ((long)n * width >= PARALLEL_MIN_WORK / 4)
    for (int t = 0; t < n; ++t) {
        const uint16_t *row = qkv + (size_t)t * width;
        const float *cos_p = cos_rows + (size_t)t * half, *sin_p = sin_rows + (size_t)t * half;
        for (int h = 0; h < n_heads; ++h) {
            float *q_head = q + ((size_t)h * n + t) * hd;
            for (int i = 0; i < hd; ++i) q_head[i] = bf16_to_f32(row[(size_t)h * hd + i]);
            if (q_norm) rms_norm_inplace(q_head, q_norm, hd, eps);
            rope(q_head, cos_p, sin_p, half);
        }
        write_kv(row, n_heads, n_kv, hd, k_norm, eps, cos_p, sin_p, half, k_cache, v_cache, cap,
                 start + t);
    }
}

/* Causal attention of n queries q (float32, n_heads x n x hd, at positions start ..
 * start+n-1) over the caches, each query seeing keys t0 .. its position (t0 as fs_attention
 * sets it for a window); out is bf16 n x n_heads x hd. Returns 0 if out of memory (out is
 * then NaN). */
int fs_attention_rows(const float *q, int n, int n_heads, int n_kv, int hd,
                      const float *k_cache, const float *v_cache, int cap, int start, int window,
                      float scale, uint16_t *out) {
    const int group = n_heads / n_kv;
    const long tasks = (long)n * n_heads;
    int failed = 0;
    long work = tasks * (start + n) * hd;
#pragma omp parallel if (work > PARALLEL_MIN_WORK) reduction(| : failed)
    {
        float *p = malloc(((size_t)cap + (size_t)hd) * sizeof(float));
        if (!p) failed = 1;
#pragma omp for schedule(dynamic, 8)
        for (long task = 0; task < tasks; ++task) {
            int t = (int)(task / n_heads), h = (int)(task % n_heads), pos = start + t;
            uint16_t *o = out + (size_t)task * hd;
            if (!p) {
                for (int i = 0; i < hd; ++i) o[i] = 0x7fc0u;
                continue;
            }
            int t0 = first_key(pos, window);
            size_t kv = (size_t)(h / group) * cap * hd;
            const float *q_head = q + ((size_t)h * n + t) * hd;
            attend_head(q_head, k_cache + kv, v_cache + kv, hd, t0, pos, scale, p, p + cap, o);
        }
        free(p);
    }
    return !failed;
}
