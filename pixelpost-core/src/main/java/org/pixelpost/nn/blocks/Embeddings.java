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
        Tensor freqs = torch.arange(new Scalar(half)).to(torch.ScalarType.Float)
            .mul(Tensors.s(-Math.log(10000) / (half - freqShift))).exp();                 // [half]
        Tensor args = t.to(torch.ScalarType.Float).unsqueeze(1).mul(freqs.unsqueeze(0));  // [B, half]
        Tensor sin = args.sin(), cos = args.cos();
        Tensor emb = flipSinToCos ? torch.cat(new TensorVector(cos, sin), 1) : torch.cat(new TensorVector(sin, cos), 1);
        return dim % 2 == 1 ? torch.constant_pad_nd(emb, new long[] {0, 1}) : emb;       // [B, dim]
    }

    /**
     * Fixed 2D sin-cos positions {@code [1, grid*grid, d]}: the first half of the channels encodes
     * the column, the second the row, each as {@code [sin, cos]}, in the order of the DiT code.
     */
    public static Tensor sinCos2d(int d, int grid) {
        float[] out = new float[grid * grid * d];
        int quarter = d / 4;
        for (int r = 0; r < grid; r++)
            for (int c = 0; c < grid; c++) {
                int base = (r * grid + c) * d;
                for (int i = 0; i < quarter; i++) {
                    double omega = 1.0 / Math.pow(10000, (double) i / quarter);
                    out[base + i] = (float) Math.sin(c * omega);
                    out[base + quarter + i] = (float) Math.cos(c * omega);
                    out[base + 2 * quarter + i] = (float) Math.sin(r * omega);
                    out[base + 3 * quarter + i] = (float) Math.cos(r * omega);
                }
            }
        return Tensors.fromFloats(out, 1, (long) grid * grid, d);
    }
}
