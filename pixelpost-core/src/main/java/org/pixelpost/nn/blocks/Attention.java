package org.pixelpost.nn.blocks;

import org.bytedeco.pytorch.DoubleOptional;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.pixelpost.nn.Layers.GroupNorm;
import org.pixelpost.nn.Layers.Linear;
import org.pixelpost.nn.Module;
import org.pixelpost.tensor.Tensors;

/**
 * Multi-head attention in diffusers' layout ({@code to_q}, {@code to_k}, {@code to_v},
 * {@code to_out.0}) on libtorch's scaled-dot-product attention: self-attention when no context is
 * given, cross-attention to {@code context} otherwise. With a {@code group_norm} it is the
 * autoencoder's spatial attention over {@code [B, C, H, W]} with a residual.
 */
public final class Attention extends Module {
    private final Linear q, k, v, out;
    private final GroupNorm groupNorm;
    private final int heads;

    /**
     * @param dim query width; @param contextDim key/value input width (dim for self-attention)
     * @param heads number of heads; @param headDim width per head
     * @param bias bias on the q/k/v projections (the output projection always has one)
     */
    public Attention(int dim, int contextDim, int heads, int headDim, boolean bias) {
        this(dim, contextDim, heads, headDim, bias, 0, 0);
    }

    private Attention(int dim, int contextDim, int heads, int headDim, boolean bias, int groups, double eps) {
        int inner = heads * headDim;
        this.heads = heads;
        groupNorm = groups > 0 ? add("group_norm", new GroupNorm(groups, dim, eps)) : null;
        q = add("to_q", new Linear(dim, inner, bias));
        k = add("to_k", new Linear(contextDim, inner, bias));
        v = add("to_v", new Linear(contextDim, inner, bias));
        out = add("to_out.0", new Linear(inner, dim));
    }

    /** The autoencoder's mid-block attention: one head over all positions, GroupNorm first, residual added. */
    public static Attention spatial(int channels, int groups, double eps) {
        return new Attention(channels, channels, 1, channels, true, groups, eps);
    }

    /** {@code x [B, N, dim]}, {@code context [B, T, contextDim]} or null, {@code mask [B, T]} (true where a token counts) or null. */
    public Tensor forward(Tensor x, Tensor context, Tensor mask) {
        Tensor c = context == null ? x : context;
        Tensor o = multiHead(q.forward(x), k.forward(c), v.forward(c), heads, mask);   // [B, N, inner]
        return out.forward(o);                                                         // [B, N, dim]
    }

    /** Spatial attention with its residual: {@code [B, C, H, W] -> [B, C, H, W]}. */
    public Tensor forwardSpatial(Tensor x) {
        long b = x.size(0), ch = x.size(1), h = x.size(2), w = x.size(3);
        Tensor s = groupNorm.forward(x).view(b, ch, h * w).transpose(1, 2);            // [B, HW, C]
        Tensor o = forward(s, null, null);                                             // [B, HW, C]
        return x.add(o.transpose(1, 2).reshape(b, ch, h, w));
    }

    /**
     * Splits {@code [B, N, H*D]} queries and {@code [B, T, H*D]} keys and values into {@code heads},
     * attends (keys masked out where {@code mask [B, T]} is false) and merges back to {@code [B, N, H*D]}.
     */
    public static Tensor multiHead(Tensor q, Tensor k, Tensor v, int heads, Tensor mask) {
        long b = q.size(0), t = k.size(1);
        return multiHeadMasked(q, k, v, heads, mask == null ? null : mask.to(torch.ScalarType.Bool).view(b, 1, 1, t));
    }

    /** As {@link #multiHead}, with a boolean mask broadcastable to {@code [B, H, N, T]} (true where a key is visible). */
    public static Tensor multiHeadMasked(Tensor q, Tensor k, Tensor v, int heads, Tensor attnMask) {
        long b = q.size(0), n = q.size(1), t = k.size(1), inner = q.size(2), d = inner / heads;
        Tensor qh = q.reshape(b, n, heads, d).transpose(1, 2);                         // [B, H, N, D]
        Tensor kh = k.reshape(b, t, heads, d).transpose(1, 2);                         // [B, H, T, D]
        Tensor vh = v.reshape(b, t, heads, d).transpose(1, 2);                         // [B, H, T, D]
        Tensor o = torch.scaled_dot_product_attention(qh, kh, vh, Tensors.opt(attnMask), 0.0, false, new DoubleOptional(), false);
        return o.transpose(1, 2).reshape(b, n, inner);                                 // [B, N, H*D]
    }
}
