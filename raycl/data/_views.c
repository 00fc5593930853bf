/*
 * Fused CPU kernel for raycl's view pipelines (raycl/data/fused.py loads it with ctypes).
 *
 * One call turns a chunk of uint8 images into uint8 views: random resized crop (+ flip) by
 * separable resampling, then a short program of per-sample ops -- colour jitter in a per-sample
 * random order + random grayscale (Color), Grayscale, Gaussian blur, solarize, flip -- then the
 * rounding to uint8.  It does exactly what the torch ops of raycl/data/augment/ do, with the
 * parameters they sampled (same expressions, same order of float32 operations but for a few sums:
 * the blur's, a crop tap's normalisation; so the results agree to the last bit almost everywhere
 * and within 1/255 always; tests/test_fused.py checks).
 *
 * Why: the torch ops make one pass over a batch-sized float tensor per elementwise step (about
 * 60 for the SimCLR colour distortion); here each image is processed whole while it sits in
 * the CPU cache, one image at a time.  No torch headers: any C99 compiler builds it in ~1 s.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

enum { OP_COLOR = 1, OP_GRAY = 2, OP_BLUR = 3, OP_SOLARIZE = 4, OP_FLIP = 5 };

/* ITU-R 601-2 luma, as torchvision and augment.functional.rgb_to_grayscale */
static const float LR = 0.2989f, LG = 0.587f, LB = 0.114f;

/* ternaries, not fmaxf/floorf: gcc vectorises these (no NaN can occur here; with fused.py's
 * -ffinite-math-only, max2 and min2 are one max/min instruction each) */
static inline float max2(float a, float b) { return a > b ? a : b; }
static inline float min2(float a, float b) { return a < b ? a : b; }
static inline float clamp01(float v) { return min2(max2(v, 0.0f), 1.0f); }
static inline float floor_small(float v)  /* floorf for |v| < 2^31 */
{
    const float t = (float)(int32_t)v;
    return t > v ? t - 1.0f : t;
}
static inline float luma(float r, float g, float b) { return r * LR + g * LG + b * LB; }
/* v / 255 for a byte v as the division rounds it (what the torch ops compute), without the divide:
 * the product with the rounded reciprocal, corrected by its remainder (two FMAs) -- equal to the
 * division for every byte value.  Without FMA instructions fmaf would be a libm call: divide. */
static inline float unit(uint8_t v)
{
#if defined(__FMA__) || defined(__ARM_FEATURE_FMA)
    const float x = (float)v, q = x * (1.0f / 255.0f);
    return __builtin_fmaf(__builtin_fmaf(-q, 255.0f, x), 1.0f / 255.0f, q);
#else
    return (float)v / 255.0f;
#endif
}

/* round(v * 255) clamped to 0..255, rounding half to even (torch.round): adding 2^23 rounds v * 255
 * to an integer (|v * 255| < 2^22), which is then the float's low mantissa bits; clamped as an
 * integer, so that the loop vectorises to integer max/min and a narrowing store. */
static inline uint8_t to_byte(float v)
{
    const float f = v * 255.0f + 0x1.0p23f;
    int32_t i;
    memcpy(&i, &f, sizeof i);
    i -= 0x4B000000;  /* the bits of 2^23: negative values come out negative, whatever their bits */
    i = i < 0 ? 0 : i;
    return (uint8_t)(i > 255 ? 255 : i);
}

/* gcc/clang vector extensions: 8 floats, which the compiler maps onto the target's registers
 * (one AVX register, half an AVX-512 one, two NEON ones) */
typedef float vf __attribute__((vector_size(32)));
#define VL ((int)(sizeof(vf) / sizeof(float)))
#define NACC 4
#define NSYM 8
static inline vf vload(const float *p) { vf v; memcpy(&v, p, sizeof v); return v; }
static inline void vstore(float *p, vf v) { memcpy(p, &v, sizeof v); }
/* gcc's __builtin_shuffle takes run-time indices (one permute instruction where the target has
 * one); other compilers gather */
#if defined(__GNUC__) && !defined(__clang__)
#define PERMUTE 1
typedef int32_t vi __attribute__((vector_size(sizeof(vf))));
static inline vi vloadi(const int32_t *p) { vi v; memcpy(&v, p, sizeof v); return v; }
#else
#define PERMUTE 0
#endif

/* o[j] = sum over t < nt of in[t][j] * k[t] for j < w, the taps added in order (as the torch ops
 * add them): NACC vectors of sums stay in registers across all the taps, so a tap costs one load
 * per vector, not also a load and a store of the partial sums. */
static void taps(const float *const *in, const float *k, int nt, float *restrict o, int w)
{
    int j = 0;
    for (; j + NACC * VL <= w; j += NACC * VL) {
        vf acc[NACC];
        for (int a = 0; a < NACC; a++) acc[a] = vload(in[0] + j + a * VL) * k[0];
        for (int t = 1; t < nt; t++)
            for (int a = 0; a < NACC; a++) acc[a] = acc[a] + vload(in[t] + j + a * VL) * k[t];
        for (int a = 0; a < NACC; a++) vstore(o + j + a * VL, acc[a]);
    }
    for (; j + VL <= w; j += VL) {
        vf acc = vload(in[0] + j) * k[0];
        for (int t = 1; t < nt; t++) acc = acc + vload(in[t] + j) * k[t];
        vstore(o + j, acc);
    }
    for (; j < w; j++) {
        float acc = in[0][j] * k[0];
        for (int t = 1; t < nt; t++) acc = acc + in[t][j] * k[t];
        o[j] = acc;
    }
}

/* na vectors (a constant once inlined) of sym_taps from o + j */
static inline __attribute__((always_inline)) void sym_block(const float *const *in, const float *k,
                                                            int nt, float *restrict o, int j, const int na)
{
    const int c = nt / 2;
    vf acc[NSYM];
    for (int a = 0; a < na; a++) acc[a] = vload(in[c] + j + a * VL) * k[c];
    for (int t = 0; t < c; t++)
        for (int a = 0; a < na; a++)
            acc[a] = acc[a] + (vload(in[t] + j + a * VL) + vload(in[nt - 1 - t] + j + a * VL)) * k[t];
    for (int a = 0; a < na; a++) vstore(o + j + a * VL, acc[a]);
}

/* taps() for an odd, symmetric kernel (k[t] == k[nt - 1 - t]): the centre tap, then each pair of
 * taps at the same distance added before its one multiply -- half the multiplies, and NSYM
 * independent sums so that the additions do not wait on each other.  The sums round differently
 * from the torch ops' (tap by tap); a uint8 view differs by one level at a handful of pixels. */
static void sym_taps(const float *const *in, const float *k, int nt, float *restrict o, int w)
{
    const int c = nt / 2;
    int j = 0;
    for (; j + NSYM * VL <= w; j += NSYM * VL) sym_block(in, k, nt, o, j, NSYM);
    for (; j + NSYM / 2 * VL <= w; j += NSYM / 2 * VL) sym_block(in, k, nt, o, j, NSYM / 2);
    for (; j + VL <= w; j += VL) sym_block(in, k, nt, o, j, 1);
    for (; j < w; j++) {
        float acc = in[c][j] * k[c];
        for (int t = 0; t < c; t++) acc = acc + (in[t][j] + in[nt - 1 - t][j]) * k[t];
        o[j] = acc;
    }
}

/* Taps per output of the triangle filter of half-width support (pixels). */
static inline int taps_for(float support) { return (int)ceilf(2.0f * support) + 1; }

/* augment.crop.resample_taps for one sample and axis: the span start .. start+length-1 resized to
 * out pixels by the triangle filter (widened to the downscale factor with antialias), as source
 * indices idx[o][t] and weights w[o][t]; flip mirrors the outputs.  The same float32 expressions in
 * the same order as the torch function, except the sum of an output's weights, which torch adds in
 * another order (a weight may differ by one ulp).  Returns T, the taps per output. */
static int crop_taps(float start, float length, int out, int antialias, int flip, int32_t *restrict idx,
                     float *restrict w)
{
    const float scale = length / (float)out;
    const float support = antialias && scale > 1.0f ? scale : 1.0f;
    const int T = taps_for(support);
    for (int i = 0; i < out; i++) {
        const float centre = ((float)i + 0.5f) * scale;
        const float first = max2(floor_small(centre - support + 0.5f), 0.0f);
        const int64_t o = (int64_t)(flip ? out - 1 - i : i) * T;
        float sum = 0.0f;
        for (int t = 0; t < T; t++) {
            const float j = first + (float)t;
            const float v = max2(1.0f - fabsf(j + 0.5f - centre) / support, 0.0f) * (j < length ? 1.0f : 0.0f);
            w[o + t] = v;
            sum = sum + v;
            idx[o + t] = (int32_t)(min2(j, length - 1.0f) + start);
        }
        for (int t = 0; t < T; t++) w[o + t] = w[o + t] / sum;
    }
    return T;
}

/* The most taps crop_taps gives for a span of at most length pixels resized to out. */
int raycl_max_taps(int length, int out)
{
    const float scale = (float)length / (float)out;
    return taps_for(scale > 1.0f ? scale : 1.0f);
}

/* Two rows of the vertical blur at once: o0 from rows in[0 .. nt-1], o1 from in[1 .. nt] (nt odd, the
 * kernel symmetric, as sym_taps).  Each pair of taps at the same distance from one output's centre
 * shares a row with the other output's pair one step further out, so a step of the loop loads two
 * rows for the two outputs' pairs, where sym_taps loads two rows for one; multiply-adds fused.  (The
 * sums round a little differently again: within the same uint8 level but at a handful of pixels.) */
#if defined(__AVX512VL__)
#define NSYM2 4  /* 32 vector registers of a vf each */
#else
#define NSYM2 2
#endif
#if defined(__clang__)
#define FP_CONTRACT_FAST _Pragma("clang fp contract(fast)")
#else
#define FP_CONTRACT_FAST
#pragma GCC push_options
#pragma GCC optimize("fp-contract=fast")
#endif
static inline __attribute__((always_inline)) void sym2_block(const float *const *in, const float *k,
                                                             int nt, float *restrict o0,
                                                             float *restrict o1, int j, const int na)
{
    FP_CONTRACT_FAST
    const int c = nt / 2;
    vf a0[NSYM2], a1[NSYM2], lo[NSYM2], hi[NSYM2];
    for (int a = 0; a < na; a++) {
        a0[a] = vload(in[c] + j + a * VL) * k[c];
        a1[a] = vload(in[c + 1] + j + a * VL) * k[c];
        lo[a] = vload(in[0] + j + a * VL);   /* o0's near row of pair t */
        hi[a] = vload(in[nt] + j + a * VL);  /* o1's far row of pair t */
    }
    for (int t = 0; t < c; t++)
        for (int a = 0; a < na; a++) {
            const vf nlo = vload(in[t + 1] + j + a * VL), nhi = vload(in[nt - 1 - t] + j + a * VL);
            a0[a] = a0[a] + (lo[a] + nhi) * k[t];
            a1[a] = a1[a] + (nlo + hi[a]) * k[t];
            lo[a] = nlo;
            hi[a] = nhi;
        }
    for (int a = 0; a < na; a++) {
        vstore(o0 + j + a * VL, a0[a]);
        vstore(o1 + j + a * VL, a1[a]);
    }
}

static void sym2_taps(const float *const *in, const float *k, int nt, float *restrict o0,
                      float *restrict o1, int w)
{
    FP_CONTRACT_FAST
    const int c = nt / 2;
    int j = 0;
    for (; j + NSYM2 * VL <= w; j += NSYM2 * VL) sym2_block(in, k, nt, o0, o1, j, NSYM2);
    for (; j + VL <= w; j += VL) sym2_block(in, k, nt, o0, o1, j, 1);
    for (; j < w; j++) {
        float a0 = in[c][j] * k[c], a1 = in[c + 1][j] * k[c];
        for (int t = 0; t < c; t++) {
            a0 = a0 + (in[t][j] + in[nt - 1 - t][j]) * k[t];
            a1 = a1 + (in[t + 1][j] + in[nt - t][j]) * k[t];
        }
        o0[j] = a0;
        o1[j] = a1;
    }
}
#if !defined(__clang__)
#pragma GCC pop_options
#endif

/* Crop + resize + flip of one image into out[c][i][j] (planar, oh x ow):
 * sum_ty wy[i][ty] * sum_tx wx[j][tx] * src[iy[i][ty]][ix[j][tx]][c] / 255, with the taps of
 * augment.crop.resample_taps (flip folded in).  The box is first converted to planar floats, then
 * resampled along rows (the few taps per output column permuted out of two vector loads, or
 * gathered) and along columns (contiguous, vectorised).  (The torch path resamples columns first:
 * the sums are the same up to float32 rounding.) */
static void resample(const uint8_t *src, int64_t sH, int64_t sW, int64_t sC,
                     const int32_t *iy, const float *wy, int Ty, const int32_t *ix, const float *wx,
                     int Tx, int oh, int ow, float *restrict box, float *restrict rows,
                     int32_t *restrict jx, float *restrict out)
{
    int64_t x0 = ix[0], x1 = ix[0], y0 = iy[0], y1 = iy[0];
    for (int k = 1; k < ow * Tx; k++) {
        if (ix[k] < x0) x0 = ix[k];
        if (ix[k] > x1) x1 = ix[k];
    }
    for (int k = 1; k < oh * Ty; k++) {
        if (iy[k] < y0) y0 = iy[k];
        if (iy[k] > y1) y1 = iy[k];
    }
    const int wb = (int)(x1 - x0 + 1), hb = (int)(y1 - y0 + 1);
    /* the batch's tap count fits its widest crop: drop the taps this one weights zero everywhere
     * (they would add exact zeros) */
    int tx = 1;
    for (int k = 0; k < ow * Tx; k++)
        if (wx[k] != 0.0f && k % Tx + 1 > tx) tx = k % Tx + 1;
    /* taps as [t][j] so the row pass below is vectorised over j */
    float *restrict tw = (float *)(jx + (int64_t)ow * Tx);
    for (int j = 0; j < ow; j++)
        for (int t = 0; t < Tx; t++) {
            jx[t * ow + j] = (int32_t)(ix[j * Tx + t] - x0);
            tw[t * ow + j] = wx[j * Tx + t];
        }
#if PERMUTE
    /* each group of VL outputs whose taps all lie within 2 VL pixels of the box row takes them from
     * two vector loads by a permute instead of gathering each (with flip the order runs backwards:
     * the group's base is its smallest index); base -1: too wide (strong downscaling) */
    int32_t *restrict rel = (int32_t *)(tw + (int64_t)ow * Tx);
    int32_t base[ow / VL + 1];
    for (int g = 0; g < ow / VL; g++) {
        int32_t lo = INT32_MAX, hi = INT32_MIN;
        for (int t = 0; t < tx; t++)
            for (int j = g * VL; j < (g + 1) * VL; j++) {
                const int32_t v = jx[t * ow + j];
                lo = v < lo ? v : lo;
                hi = v > hi ? v : hi;
            }
        base[g] = hi - lo < 2 * VL ? lo : -1;
        for (int t = 0; t < tx; t++)
            for (int j = g * VL; j < (g + 1) * VL; j++) rel[t * ow + j] = jx[t * ow + j] - lo;
    }
#endif
    if (sW == 3 && sC == 1) {  /* HWC (what decoding gives): a row's bytes deinterleaved, then converted */
        uint8_t *tmp = (uint8_t *)rows;  /* free until the row pass, and 3 x W bytes long at least */
        for (int y = 0; y < hb; y++) {
            const uint8_t *s = src + (y0 + y) * sH + x0 * 3;
            for (int x = 0; x < wb; x++) {
                tmp[x] = s[3 * x]; tmp[wb + x] = s[3 * x + 1]; tmp[2 * wb + x] = s[3 * x + 2];
            }
            for (int c = 0; c < 3; c++) {
                float *b = box + ((int64_t)c * hb + y) * wb;
                for (int x = 0; x < wb; x++) b[x] = unit(tmp[c * wb + x]);
            }
        }
    } else {
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < hb; y++) {
                const uint8_t *s = src + (y0 + y) * sH + x0 * sW + c * sC;
                float *b = box + ((int64_t)c * hb + y) * wb;
                for (int x = 0; x < wb; x++) b[x] = unit(s[x * sW]);
            }
    }
    /* along rows: rows[c][y][j], the 3 x hb rows of the box (all channels) in one sequence */
    const int nrow = 3 * hb;
    int jp = 0;  /* outputs before jp take their taps by permutes (a group of VL at a time) */
#if PERMUTE
    while (jp + VL <= ow && base[jp / VL] >= 0) jp += VL;
    int y = 0;
    for (; y + 4 <= nrow; y += 4)  /* four rows at a time: a group's taps loaded once for the four */
        for (int j = 0; j < jp; j += VL) {
            const float *b = box + (int64_t)y * wb + base[j / VL];
            vf lo[4], hi[4], acc[4];
            for (int q = 0; q < 4; q++) {
                lo[q] = vload(b + (int64_t)q * wb);
                hi[q] = vload(b + (int64_t)q * wb + VL);
            }
            vi ri = vloadi(rel + j);
            vf wi = vload(tw + j);
            for (int q = 0; q < 4; q++) acc[q] = __builtin_shuffle(lo[q], hi[q], ri) * wi;
            for (int t = 1; t < tx; t++) {
                ri = vloadi(rel + t * ow + j);
                wi = vload(tw + t * ow + j);
                for (int q = 0; q < 4; q++) acc[q] = acc[q] + __builtin_shuffle(lo[q], hi[q], ri) * wi;
            }
            for (int q = 0; q < 4; q++) vstore(rows + (int64_t)(y + q) * ow + j, acc[q]);
        }
    for (; y < nrow; y++)
        for (int j = 0; j < jp; j += VL) {
            const float *b = box + (int64_t)y * wb + base[j / VL];
            const vf lo = vload(b), hi = vload(b + VL);
            vf acc = __builtin_shuffle(lo, hi, vloadi(rel + j)) * vload(tw + j);
            for (int t = 1; t < tx; t++)
                acc = acc + __builtin_shuffle(lo, hi, vloadi(rel + t * ow + j)) * vload(tw + t * ow + j);
            vstore(rows + (int64_t)y * ow + j, acc);
        }
#endif
    if (jp < ow)  /* the rest (taps spread wider than a permute reaches): gathers */
        for (int y = 0; y < nrow; y++) {
            const float *restrict b = box + (int64_t)y * wb;
            float *restrict r = rows + (int64_t)y * ow;
            for (int j = jp; j < ow; j++) r[j] = b[jx[j]] * tw[j];
            for (int t = 1; t < tx; t++) {
                const int32_t *restrict jt = jx + t * ow;
                const float *restrict wt = tw + t * ow;
                for (int j = jp; j < ow; j++) r[j] = r[j] + b[jt[j]] * wt[j];
            }
        }
    for (int c = 0; c < 3; c++) {
        for (int i = 0; i < oh; i++) {  /* along columns: out[c][i][j] */
            const float *in[Ty];
            int ty = Ty;
            while (ty > 1 && wy[i * Ty + ty - 1] == 0.0f) ty--;
            for (int t = 0; t < ty; t++) in[t] = rows + ((int64_t)c * hb + (iy[i * Ty + t] - y0)) * ow;
            taps(in, wy + (int64_t)i * Ty, ty, out + ((int64_t)c * oh + i) * ow, ow);
        }
    }
}

static inline float hue_channel(float h6, float n, float maxc, float cr)
{
    float k = h6 + n;
    k = k >= 6.0f ? k - 6.0f : k;
    const float a = min2(k, 4.0f - k);
    return maxc - clamp01(a) * cr;
}

/* Hue rotation by f (fraction of a turn): augment.functional.adjust_hue, pixel by pixel (branch-free, so
 * that the compiler vectorises it). */
static void hue(float *restrict r, float *restrict g, float *restrict b, int64_t n, float f)
{
    const float shift = 6.0f * f;
    for (int64_t p = 0; p < n; p++) {
        const float R = r[p], G = g[p], B = b[p];
        const float maxc = max2(max2(R, G), B), minc = min2(min2(R, G), B);
        const float cr = maxc - minc;
        const float from_g = (B - R) + 2.0f * cr, from_b = (R - G) + 4.0f * cr;
        float h6 = maxc == R ? G - B : (maxc == G ? from_g : from_b);
        h6 = h6 / (cr + (cr == 0.0f ? 1.0f : 0.0f));
        h6 = h6 + shift;
        h6 = h6 - floor_small(h6 * (1.0f / 6.0f)) * 6.0f;
        r[p] = hue_channel(h6, 5.0f, maxc, cr);
        g[p] = hue_channel(h6, 3.0f, maxc, cr);
        b[p] = hue_channel(h6, 1.0f, maxc, cr);
    }
}

/* Replace the image by its 3-channel luma. */
static void to_gray(float *r, float *g, float *b, int64_t n)
{
    for (int64_t p = 0; p < n; p++) {
        const float y = luma(r[p], g[p], b[p]);
        r[p] = y; g[p] = y; b[p] = y;
    }
}

/* The sum of the luma of n pixels, in double: 16 running sums, so that it vectorises instead of
 * waiting on one addition's latency per pixel (a double sum of floats: the order moves it by far
 * less than one float32 step). */
static double luma_sum(const float *r, const float *g, const float *b, int64_t n)
{
    double acc[16] = {0.0};
    int64_t p = 0;
    for (; p + 16 <= n; p += 16)
        for (int j = 0; j < 16; j++) acc[j] += (double)luma(r[p + j], g[p + j], b[p + j]);
    double sum = 0.0;
    for (; p < n; p++) sum += (double)luma(r[p], g[p], b[p]);
    for (int j = 0; j < 16; j++) sum += acc[j];
    return sum;
}

/* augment.functional.color_jitter for one sample: prm = 4 factors (brightness, contrast, saturation, hue),
 * 4 op indices in application order, jitter flag, grayscale flag; enabled: bit k = op k exists. */
static void color(float *x, int64_t n, const float *prm, int enabled)
{
    float *r = x, *g = x + n, *b = x + 2 * n;
    if (prm[8] != 0.0f) {
        for (int step = 0; step < 4; step++) {
            const int op = (int)prm[4 + step];
            if (!(enabled >> op & 1)) continue;
            const float f = prm[op], keep = 1.0f - f;
            if (op == 0) {
                for (int64_t p = 0; p < 3 * n; p++) x[p] = clamp01(x[p] * f);
            } else if (op == 1) {
                const float m = (float)(luma_sum(r, g, b, n) / (double)n) * keep;
                for (int64_t p = 0; p < n; p++) {
                    r[p] = clamp01(r[p] * f + m); g[p] = clamp01(g[p] * f + m); b[p] = clamp01(b[p] * f + m);
                }
            } else if (op == 2) {
                for (int64_t p = 0; p < n; p++) {
                    const float m = luma(r[p], g[p], b[p]) * keep;
                    r[p] = clamp01(r[p] * f + m); g[p] = clamp01(g[p] * f + m); b[p] = clamp01(b[p] * f + m);
                }
            } else {
                hue(r, g, b, n, f);
            }
        }
    }
    if (prm[9] != 0.0f) to_gray(r, g, b, n);
}

/* Taps whose weight is below this are skipped: together they move a pixel by less than k x 1e-7 of
 * its range (2e-6 for SimCLR's 23 taps at 224 px), far from the 1/510 that decides a uint8 rounding,
 * and at SimCLR's sigma (0.1 to 2) about half of those 23 taps are below it. */
#define TAP_EPS 1e-7f

/* augment.functional.gaussian_blur for one sample: separable, reflect padding, torchvision's kernel
 * (the taps added in the same order as the torch ops, so the sums round alike). */
static void blur(float *x, int h, int w, float sigma, int k, float *restrict scratch,
                 float *restrict line)
{
    const int pad = k / 2;
    if (pad == 0) return;
    float kern[k];
    float total = 0.0f;
    for (int t = 0; t < k; t++) {
        const float u = (float)(t - pad) / sigma;
        kern[t] = expf(-0.5f * (u * u));
        total += kern[t];
    }
    for (int t = 0; t < k; t++) kern[t] = kern[t] / total;
    int lo = 0;  /* the kernel is symmetric: taps lo .. k-1-lo are kept */
    while (lo < pad && kern[lo] < TAP_EPS) lo++;
    const int hi = k - lo;
    for (int c = 0; c < 3; c++) {
        float *img = x + (int64_t)c * h * w;
        for (int i = 0; i < h; i += 2) {  /* vertical: scratch = blur of img along rows, two at a time */
            const float *in[k + 1];
            for (int t = lo; t <= hi; t++) {
                int s = i + t - pad;
                s = s < 0 ? -s : (s >= h ? 2 * h - 2 - s : s);
                in[t] = img + (int64_t)s * w;
            }
            if (i + 1 < h)
                sym2_taps(in + lo, kern + lo, hi - lo, scratch + (int64_t)i * w, scratch + (int64_t)(i + 1) * w, w);
            else
                sym_taps(in + lo, kern + lo, hi - lo, scratch + (int64_t)i * w, w);
        }
        const float *shifted[k];  /* tap t reads the padded row from its t-th element */
        for (int t = lo; t < hi; t++) shifted[t] = line + t;
        for (int i = 0; i < h; i++) {  /* horizontal: img = blur of scratch along columns */
            const float *in = scratch + (int64_t)i * w;
            for (int j = 0; j < pad; j++) line[j] = in[pad - j];
            for (int j = 0; j < w; j++) line[pad + j] = in[j];
            for (int j = 0; j < pad; j++) line[pad + w + j] = in[w - 2 - j];
            sym_taps(shifted + lo, kern + lo, hi - lo, img + (int64_t)i * w, w);
        }
    }
}

static void solarize(float *x, int64_t n, float threshold)
{
    for (int64_t p = 0; p < 3 * n; p++) x[p] = x[p] >= threshold ? 1.0f - x[p] : x[p];
}

static void flip(float *x, int h, int w)
{
    for (int64_t row = 0; row < 3 * (int64_t)h; row++) {
        float *a = x + row * w;
        for (int j = 0; j < w / 2; j++) {
            const float t = a[j]; a[j] = a[w - 1 - j]; a[w - 1 - j] = t;
        }
    }
}

/* crop_taps for callers outside this file (tests compare it with augment.crop.resample_taps):
 * idx and w hold out x raycl_max_taps(ceil(length), out) values. */
int raycl_crop_taps(float start, float length, int out, int antialias, int flip, int32_t *idx, float *w)
{
    return crop_taps(start, length, out, antialias, flip, idx, w);
}

/*
 * src: uint8 images with strides (in bytes) sB, sH, sW, sC (HWC or CHW, any layout);
 * boxes [B, 4]: each sample's crop (top, left, height, width), flips [B]: mirrored if non-zero,
 * antialias: widen the resampling filter when downscaling (augment.crop.resample_taps);
 * ops: nops codes with one int and one float argument each (Color: enabled mask; Blur: kernel
 * size; Solarize: threshold) and params[k], a float32 [B, P_k] array of per-sample parameters
 * (Color: 10 as in color(); Gray, Solarize, Flip: mask; Blur: mask, sigma).
 * out: uint8 [B, 3, oh, ow].  Returns 0, or -1 (out of memory), -2 (unknown op code).
 */
int raycl_views(const uint8_t *src, int64_t sB, int64_t sH, int64_t sW, int64_t sC, int B, int H,
                int W, const float *boxes, const float *flips, int antialias,
                int oh, int ow, int nops, const int32_t *codes, const int32_t *iargs,
                const float *fargs, const float *const *params, uint8_t *out)
{
    static const int width[6] = {0, 10, 1, 2, 1, 1};
    for (int k = 0; k < nops; k++)
        if (codes[k] < OP_COLOR || codes[k] > OP_FLIP) return -2;
    const int64_t n = (int64_t)oh * ow;
    float *buf = malloc(sizeof(float) * 3 * n);
    float *box = malloc(sizeof(float) * (3 * (int64_t)H * W + 2 * VL));  /* + a permute's overread */
    const int64_t nrows = (int64_t)H * ow > W ? (int64_t)H * ow : W;  /* also a converted HWC row */
    float *rows = malloc(sizeof(float) * 3 * nrows);
    const int Ty_max = raycl_max_taps(H, oh), Tx_max = raycl_max_taps(W, ow);
    int32_t *iy = malloc((sizeof(int32_t) + sizeof(float)) * (int64_t)oh * Ty_max);  /* + weights */
    int32_t *ix = malloc((sizeof(int32_t) + sizeof(float)) * (int64_t)ow * Tx_max);
    float *wy = (float *)(iy + (int64_t)oh * Ty_max), *wx = (float *)(ix + (int64_t)ow * Tx_max);
    int32_t *jx = malloc((2 * sizeof(int32_t) + sizeof(float)) * (int64_t)ow * Tx_max);  /* + weights, rel */
    float *scratch = malloc(sizeof(float) * n);
    float *line = malloc(sizeof(float) * 3 * (int64_t)ow);  /* a row + reflect padding (< ow each side) */
    if (!buf || !box || !rows || !iy || !ix || !jx || !scratch || !line) {
        free(buf); free(box); free(rows); free(iy); free(ix); free(jx); free(scratch); free(line);
        return -1;
    }
    for (int s = 0; s < B; s++) {
        const float *bx = boxes + 4 * (int64_t)s;
        const int Ty = crop_taps(bx[0], bx[2], oh, antialias, 0, iy, wy);
        const int Tx = crop_taps(bx[1], bx[3], ow, antialias, flips[s] != 0.0f, ix, wx);
        resample(src + s * sB, sH, sW, sC, iy, wy, Ty, ix, wx, Tx, oh, ow, box, rows, jx, buf);
        for (int k = 0; k < nops; k++) {
            const float *prm = params[k] + (int64_t)s * width[codes[k]];
            switch (codes[k]) {
            case OP_COLOR: color(buf, n, prm, iargs[k]); break;
            case OP_GRAY: if (prm[0] != 0.0f) to_gray(buf, buf + n, buf + 2 * n, n); break;
            case OP_BLUR: if (prm[0] != 0.0f) blur(buf, oh, ow, prm[1], iargs[k], scratch, line); break;
            case OP_SOLARIZE: if (prm[0] != 0.0f) solarize(buf, n, fargs[k]); break;
            case OP_FLIP: if (prm[0] != 0.0f) flip(buf, oh, ow); break;
            }
        }
        uint8_t *o = out + (int64_t)s * 3 * n;
        for (int64_t p = 0; p < 3 * n; p++) o[p] = to_byte(buf[p]);
    }
    free(buf); free(box); free(rows); free(iy); free(ix); free(jx); free(scratch); free(line);
    return 0;
}
