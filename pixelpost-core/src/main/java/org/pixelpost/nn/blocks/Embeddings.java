package org.pixelpost.nn.blocks;

import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorVector;
import org.bytedeco.pytorch.global.torch;
import org.pixelpost.tensor.Tensors;

/** Fixed embeddings of timesteps and positions, as the reference code computes them. */
public final class Embeddings {
    private Embeddings() {}

    /**
     * Sinusoidal timestep features {@code [B, dim]} (diffusers' {@code get_timestep_embedding}):
     * frequencies {@code exp(-ln(10000) i / (half - freqShift))}, {@code [sin, cos]}, or
     * {@code [cos, sin]} with {@code flipSinToCos}.
     */
    public static Tensor timestep(Tensor t, int dim, boolean flipSinToCos, double freqShift) {
        int half = dim / 2;
        Tensor freqs = Tensors.follow(torch.arange(new Scalar(half)).to(torch.ScalarType.Float), t)
            .mul(Tensors.s(-Math.log(10000) / (half - freqShift))).exp();                 // [half]
        Tensor args = t.to(torch.ScalarType.Float).unsqueeze(1).mul(freqs.unsqueeze(0));  // [B, half]
        Tensor sin = args.sin(), cos = args.cos();
        Tensor emb = flipSinToCos ? torch.cat(new TensorVector(cos, sin), 1) : torch.cat(new TensorVector(sin, cos), 1);
        return dim % 2 == 1 ? torch.constant_pad_nd(emb, new long[] {0, 1}) : emb;       // [B, dim]
    }

    /**
     * Fixed 2D sin-cos positions {@code [1, h*w, d]} of a patch grid: the first half of the channels
     * encodes the column, the second the row, each as {@code [sin, cos]}, in the order of the DiT and
     * PixArt code. A row's position is {@code r * rowScale}, a column's {@code c * colScale} (1 on the
     * model's own grid; PixArt scales other grids to its base size).
     */
    public static Tensor sinCos2d(int d, int h, int w, double rowScale, double colScale) {
        float[] out = new float[h * w * d];
        int quarter = d / 4;
        for (int r = 0; r < h; r++)
            for (int c = 0; c < w; c++) {
                int base = (r * w + c) * d;
                double pr = r * rowScale, pc = c * colScale;
                for (int i = 0; i < quarter; i++) {
                    double omega = 1.0 / Math.pow(10000, (double) i / quarter);
                    out[base + i] = (float) Math.sin(pc * omega);
                    out[base + quarter + i] = (float) Math.cos(pc * omega);
                    out[base + 2 * quarter + i] = (float) Math.sin(pr * omega);
                    out[base + 3 * quarter + i] = (float) Math.cos(pr * omega);
                }
            }
        return Tensors.fromFloats(out, 1, (long) h * w, d);
    }
}
