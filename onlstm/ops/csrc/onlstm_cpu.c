/* The CPU kernels of the fused ON-LSTM, for float32 tensors: the pointwise part of one time step
 * (forward and backward).
 *
 * Everything of a step except the hidden-to-hidden matmul (which stays in PyTorch): the cumax master gates, the four gate nonlinearities, the overlap, the ON-LSTM
 * input and forget gates and the cell update (onlstm/cell.py names each equation) and h_t, and
 * in the backward the pre-activation gradient of the whole gate row and dc_{t-1}. One call per
 * step replaces ~40 small PyTorch kernels and their dispatch (onlstm/ops/cpu.py says why).
 *
 * Plain C with no PyTorch headers, so it compiles in about half a second at first use
 * (onlstm/ops/cpu_build.py) and is called through ctypes with raw pointers to contiguous tensors,
 * only by the registered ops of onlstm/ops/cpu.py, which check every shape, dtype and stride first.
 * The step kernels are single-threaded on purpose: PyTorch's matmuls own the OpenMP pool, and a
 * second pool from this library would compete with it for the cores.
 *
 * Gate row layout (onlstm/cell.py): [master input logits (n), master forget logits (n),
 * output (H), cell (H), input (H), forget (H)], H = n * cs.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

/* exp(x) for float32: Cephes' range reduction and polynomial (relative error ~2e-7), written
 * branch-free so that GCC vectorises the loops that call it (libm's expf is a scalar call). */
static inline float fast_exp(float x) {
    x = x < -87.3f ? -87.3f : x; /* not fminf/fmaxf: those vectorise only without NaN semantics */
    x = x > 88.7f ? 88.7f : x;
    float fx = floorf(x * 1.44269504088896341f + 0.5f);
    x = x - fx * 0.693359375f + fx * 2.12194440e-4f;
    float y = 1.9875691500e-4f;
    y = y * x + 1.3981999507e-3f;
    y = y * x + 8.3334519073e-3f;
    y = y * x + 4.1665795894e-2f;
    y = y * x + 1.6666665459e-1f;
    y = y * x + 5.0000001201e-1f;
    y = y * x * x + x + 1.0f;
    const int32_t bits = ((int32_t)fx + 127) << 23; /* 2^fx */
    float scale;
    memcpy(&scale, &bits, sizeof scale);
    return y * scale;
}

static inline float sigmoidf_(float x) { return 1.0f / (1.0f + fast_exp(-x)); }

/* tanh(x) = 1 - 2 / (1 + exp(2x)): exact limits at +-inf, absolute error ~1e-7 near 0 */
static inline float tanhf_(float x) { return 1.0f - 2.0f / (1.0f + fast_exp(2.0f * x)); }

/* softmax of z (length n) into p and its cumulative sum into cum */
static void softmax_cumsum(const float *z, int64_t n, float *p, float *cum) {
    float zmax = z[0];
    for (int64_t i = 1; i < n; i++) zmax = fmaxf(zmax, z[i]);
    float sum = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        p[i] = fast_exp(z[i] - zmax);
        sum += p[i];
    }
    float inv = 1.0f / sum, run = 0.0f;
    for (int64_t i = 0; i < n; i++) {
        p[i] *= inv;
        run += p[i];
        cum[i] = run;
    }
}

/* One forward step for every batch row.
 * gates  (B, R): in: this step's input projection x_t W_ih^T; out: [raw master logits, o,
 *        tanh(cell), i, f] (activated; the backward reads them)
 * rec    (B, R): h_{t-1} W_hh^T, added here
 * bias   (R): b_ih + b_hh, added here (cheaper than a pass of its own over the projection)
 * c_prev, c_new, tanh_c, h_new (B, H); c_new may alias c_prev (element-wise update)
 * probs  (B, 2, n): softmax of [input, forget] master logits (kept for the backward)
 * master (B, 2, n): [master input, master forget] = [1 - cumax(input logits), cumax(forget logits)]
 * scratch: 2n floats */
void onlstm_forward_step(int64_t batch, int64_t n, int64_t cs, float *gates, const float *rec,
                         const float *bias, const float *c_prev, float *probs, float *master, float *c_new,
                         float *tanh_c, float *h_new, float *scratch) {
    const int64_t H = n * cs, R = 2 * n + 4 * H;
    for (int64_t b = 0; b < batch; b++) {
        float *g = gates + b * R;
        const float *r = rec + b * R;
        for (int64_t j = 0; j < R; j++) g[j] += r[j] + bias[j];
        float *o = g + 2 * n, *cell = o + H, *gi = cell + H, *gf = gi + H;
        for (int64_t j = 0; j < H; j++) o[j] = sigmoidf_(o[j]);
        for (int64_t j = 0; j < H; j++) cell[j] = tanhf_(cell[j]);
        for (int64_t j = 0; j < 2 * H; j++) gi[j] = sigmoidf_(gi[j]); /* input and forget */

        float *p = probs + b * 2 * n, *m = master + b * 2 * n, *cum = scratch;
        softmax_cumsum(g, n, p, cum);
        softmax_cumsum(g + n, n, p + n, cum + n);
        for (int64_t i = 0; i < n; i++) {
            m[i] = 1.0f - cum[i];
            m[n + i] = cum[n + i];
        }

        const float *cp = c_prev + b * H;
        float *cn = c_new + b * H, *tc = tanh_c + b * H, *h = h_new + b * H;
        for (int64_t i = 0; i < n; i++) {
            const float mi = m[i], mf = m[n + i], w = mi * mf; /* the overlap w */
            for (int64_t k = i * cs; k < (i + 1) * cs; k++) {
                const float mix_i = gi[k] * w + (mi - w); /* ON-LSTM input gate i^ */
                const float mix_f = gf[k] * w + (mf - w); /* ON-LSTM forget gate f^ */
                cn[k] = mix_f * cp[k] + mix_i * cell[k];  /* the cell update */
            }
        }
        for (int64_t j = 0; j < H; j++) {
            tc[j] = tanhf_(cn[j]);
            h[j] = o[j] * tc[j];
        }
    }
}

/* The backward through h = o tanh(c) and c = mix_i tanh(cell) + mix_f c_prev up to the mixes:
 * dc (in: from step t+1) becomes the total dL/dc_t. A function of its own because GCC honours
 * restrict on parameters: with it the loop is vectorised, without it the alias analysis gives up. */
static void backward_outer(int64_t H, const float *restrict dh, const float *restrict o,
                           const float *restrict tc, const float *restrict cell,
                           const float *restrict cp, float *restrict dc, float *restrict dg_o,
                           float *restrict d_mix_i, float *restrict d_mix_f) {
    for (int64_t j = 0; j < H; j++) {
        const float dct = dh[j] * o[j] * (1.0f - tc[j] * tc[j]) + dc[j];
        dg_o[j] = dh[j] * tc[j] * o[j] * (1.0f - o[j]);
        d_mix_i[j] = dct * cell[j];
        d_mix_f[j] = dct * cp[j];
        dc[j] = dct;
    }
}

/* One backward step for every batch row.
 * gates, probs, master, c_prev, tanh_c: what the forward step left for this step
 * dh_in  (B, H) or NULL: d gates_{t+1} W_hh (or the final hidden state's gradient at the last step)
 * d_out  (B, H) or NULL: the gradient of this step's output h_t
 * d_master_dist (B, 2) or NULL: the distances' gradient on [master_input, master_forget], the
 *        same for every chunk (onlstm.fused.master_grad_from_distances)
 * dc     (B, H): in: dL/dc_t from step t+1; out: dL/dc_{t-1}
 * d_gates (B, R): out: the pre-activation gradient of the whole gate row
 * scratch: 3H + 2n floats */
void onlstm_backward_step(int64_t batch, int64_t n, int64_t cs, const float *gates, const float *probs,
                          const float *master, const float *c_prev, const float *tanh_c,
                          const float *dh_in, const float *d_out, const float *d_master_dist, float *dc,
                          float *d_gates, float *scratch) {
    const int64_t H = n * cs, R = 2 * n + 4 * H;
    float *d_mix_i = scratch, *d_mix_f = scratch + H, *dh = scratch + 2 * H, *dm = scratch + 3 * H; /* dm: [d master_input, d master_forget] */
    for (int64_t b = 0; b < batch; b++) {
        const float *g = gates + b * R;
        const float *o = g + 2 * n, *cell = o + H, *gi = cell + H, *gf = gi + H;
        const float *p = probs + b * 2 * n, *m = master + b * 2 * n;
        const float *cp = c_prev + b * H, *tc = tanh_c + b * H;
        float *dcb = dc + b * H, *dg = d_gates + b * R;
        float *dg_o = dg + 2 * n, *dg_cell = dg_o + H, *dg_i = dg_cell + H, *dg_f = dg_i + H;

        /* dh = dh_in + d_out, built first so that the main loop has no branches (vectorised) */
        if (dh_in && d_out)
            for (int64_t j = 0; j < H; j++) dh[j] = dh_in[b * H + j] + d_out[b * H + j];
        else if (dh_in || d_out)
            memcpy(dh, (dh_in ? dh_in : d_out) + b * H, H * sizeof(float));
        else
            memset(dh, 0, H * sizeof(float));
        backward_outer(H, dh, o, tc, cell, cp, dcb, dg_o, d_mix_i, d_mix_f);
        for (int64_t i = 0; i < n; i++) {
            const float mi = m[i], mf = m[n + i], w = mi * mf;
            float s_ov = 0.0f, s_i = 0.0f, s_f = 0.0f;
            for (int64_t k = i * cs; k < (i + 1) * cs; k++) {
                const float mix_i = gi[k] * w + (mi - w), mix_f = gf[k] * w + (mf - w);
                const float dct = dcb[k];
                dcb[k] = dct * mix_f;
                dg_cell[k] = dct * mix_i * (1.0f - cell[k] * cell[k]);
                dg_i[k] = d_mix_i[k] * w * gi[k] * (1.0f - gi[k]);
                dg_f[k] = d_mix_f[k] * w * gf[k] * (1.0f - gf[k]);
                /* mix = s w + master - w: d w = d_mix (s - 1), d master = d_mix */
                s_ov += d_mix_i[k] * (gi[k] - 1.0f) + d_mix_f[k] * (gf[k] - 1.0f);
                s_i += d_mix_i[k];
                s_f += d_mix_f[k];
            }
            dm[i] = s_i + s_ov * mf;     /* w = master_input * master_forget */
            dm[n + i] = s_f + s_ov * mi;
        }
        if (d_master_dist) {
            const float di = d_master_dist[b * 2], df = d_master_dist[b * 2 + 1];
            for (int64_t i = 0; i < n; i++) {
                dm[i] += di;
                dm[n + i] += df;
            }
        }
        /* master_input = 1 - cumsum(p_in), master_forget = cumsum(p_f): d p = reverse cumsum of
         * d cumsum; then the softmax backward p (dp - sum(p dp)). */
        for (int64_t half = 0; half < 2; half++) {
            const float sign = half == 0 ? -1.0f : 1.0f;
            const float *ph = p + half * n, *dmh = dm + half * n;
            float *dz = dg + half * n, run = 0.0f, dot = 0.0f;
            for (int64_t i = n - 1; i >= 0; i--) {
                run += sign * dmh[i];
                dz[i] = run; /* d p_i */
                dot += ph[i] * run;
            }
            for (int64_t i = 0; i < n; i++) dz[i] = ph[i] * (dz[i] - dot);
        }
    }
}

/* ---- Subnormal floats off for the calling thread, for the length of one op. ----
 * Sets FTZ (results below FLT_MIN flush to zero) and DAZ (such inputs read as zero) in the SSE
 * control register and returns the previous register for onlstm_restore_fp_mode. A trained
 * model's tiny gradients and saturated gates make subnormal products in the step kernels and in
 * MKL's matmuls, where x86 takes a slow microcode path (docs/performance.md, "Subnormal floats");
 * oneDNN, which runs nn.LSTM, sets the same mode for its own kernels. Elsewhere: a no-op. */
#if defined(__SSE2__)
#include <xmmintrin.h>
unsigned int onlstm_subnormals_off(void) {
    const unsigned int old = _mm_getcsr();
    _mm_setcsr(old | 0x8040u);
    return old;
}
void onlstm_restore_fp_mode(unsigned int old) { _mm_setcsr(old); }
#else
unsigned int onlstm_subnormals_off(void) { return 0; }
void onlstm_restore_fp_mode(unsigned int old) { (void)old; }
#endif
