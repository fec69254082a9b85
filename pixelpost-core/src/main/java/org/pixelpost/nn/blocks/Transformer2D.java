package org.pixelpost.nn.blocks;

import java.util.ArrayList;
import java.util.List;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorVector;
import org.bytedeco.pytorch.global.torch;
import org.pixelpost.nn.Layers.Conv2d;
import org.pixelpost.nn.Layers.GroupNorm;
import org.pixelpost.nn.Layers.LayerNorm;
import org.pixelpost.nn.Layers.Linear;
import org.pixelpost.nn.Module;

/**
 * The spatial transformer of the SD U-Net, in diffusers' layout ({@code Transformer2DModel} with
 * continuous input): GroupNorm, {@code proj_in} (1x1 conv, or linear with
 * {@code use_linear_projection}), transformer blocks over the H*W positions, {@code proj_out}, and
 * the residual.
 */
public final class Transformer2D extends Module {
    /**
     * {@code BasicTransformerBlock}: self-attention, cross-attention to the text, GEGLU feed-forward,
     * each after a LayerNorm and with a residual.
     */
    public static final class Block extends Module {
        private final LayerNorm norm1, norm2, norm3;
        private final Attention attn1, attn2;
        private final Linear ffProj, ffOut;

        Block(int dim, int heads, int headDim, int contextDim) {
            norm1 = add("norm1", new LayerNorm(dim, 1e-5, true));
            attn1 = add("attn1", new Attention(dim, dim, heads, headDim, false));
            norm2 = add("norm2", new LayerNorm(dim, 1e-5, true));
            attn2 = add("attn2", new Attention(dim, contextDim, heads, headDim, false));
            norm3 = add("norm3", new LayerNorm(dim, 1e-5, true));
            ffProj = add("ff.net.0.proj", new Linear(dim, 2L * 4 * dim));
            ffOut = add("ff.net.2", new Linear(4L * dim, dim));
        }

        Tensor forward(Tensor x, Tensor context) {
            x = attn1.forward(norm1.forward(x), null, null).add(x);                  // [B, N, D]
            x = attn2.forward(norm2.forward(x), context, null).add(x);               // [B, N, D]
            TensorVector hg = ffProj.forward(norm3.forward(x)).chunk(2, -1);          // GEGLU: 2 x [B, N, 4D]
            Tensor h = hg.get(0).mul(torch.gelu(hg.get(1)));                          // [B, N, 4D]
            return ffOut.forward(h).add(x);                                           // [B, N, D]
        }
    }

    private final GroupNorm norm;
    private final Module projIn, projOut;
    private final List<Block> blocks = new ArrayList<>();
    private final boolean linearProjection;

    /**
     * @param channels input and output channels; {@code heads * headDim} is the transformer's width
     * @param contextDim width of the text tokens attended to
     */
    public Transformer2D(int channels, int heads, int headDim, int layers, int contextDim, int groups, boolean linearProjection) {
        int inner = heads * headDim;
        this.linearProjection = linearProjection;
        norm = add("norm", new GroupNorm(groups, channels, 1e-6));
        projIn = add("proj_in", linearProjection ? new Linear(channels, inner) : Conv2d.k1(channels, inner, true));
        for (int i = 0; i < layers; i++) blocks.add(add("transformer_blocks." + i, new Block(inner, heads, headDim, contextDim)));
        projOut = add("proj_out", linearProjection ? new Linear(inner, channels) : Conv2d.k1(inner, channels, true));
    }

    /** {@code x [B, C, H, W]}, {@code context [B, T, contextDim]} to {@code [B, C, H, W]}. */
    public Tensor forward(Tensor x, Tensor context) {
        long b = x.size(0), c = x.size(1), h = x.size(2), w = x.size(3);
        Tensor s = norm.forward(x);                                                   // [B, C, H, W]
        if (!linearProjection) s = ((Conv2d) projIn).forward(s);                      // [B, D, H, W]
        long d = s.size(1);
        s = s.permute(0, 2, 3, 1).reshape(b, h * w, d);                               // [B, HW, D]
        if (linearProjection) s = ((Linear) projIn).forward(s);                       // [B, HW, D]
        for (Block blk : blocks) s = blk.forward(s, context);                        // [B, HW, D]
        if (linearProjection) s = ((Linear) projOut).forward(s);                      // [B, HW, C]
        s = s.reshape(b, h, w, s.size(2)).permute(0, 3, 1, 2);                        // [B, C or D, H, W]
        if (!linearProjection) s = ((Conv2d) projOut).forward(s.contiguous());        // [B, C, H, W]
        return s.add(x);
    }
}
