package org.pixelpost.sampling;

import org.bytedeco.pytorch.Scalar;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorVector;
import org.bytedeco.pytorch.global.torch;
import org.pixelpost.model.Conditioning;
import org.pixelpost.tensor.Tensors;

/** Classifier-free guidance as small functions. */
public final class Guidance {
    private Guidance() {}

    /** A conditional model call: output for {@code zT} at timesteps {@code t [B]} given text. */
    @FunctionalInterface
    public interface Conditional {
        Tensor apply(Tensor zT, Tensor t, Conditioning cond);
    }

    /** The rows guidance runs: {@code [uncond; cond]}. */
    public static Conditioning join(Conditioning uncond, Conditioning cond) {
        return uncond.concat(cond);
    }

    /** {@code uncond + g (cond - uncond)}. */
    public static Tensor combine(Tensor uncond, Tensor cond, double g) {
        return uncond.add(cond.sub(uncond).mul(Tensors.s(g)));
    }

    /**
     * A guided denoise function over a batch of {@code n} prompts. With {@code g > 1}, {@code cond}
     * is {@code [uncond; cond]} (2n rows, see {@link #join}) and the unconditional and conditional
     * passes go through the model as one batch, as the reference pipelines do; otherwise it is the n
     * conditional rows.
     */
    public static Denoise classifierFree(Conditional model, Conditioning cond, double g) {
        boolean cfg = g > 1;
        return (zT, t) -> {
            long n = zT.size(0);
            Tensor in = cfg ? torch.cat(new TensorVector(zT, zT), 0) : zT;                       // [2n or n, C, h, w]
            // whole timesteps as int64, as the training saw them; the sigma-space samplers' fractional ones as float32
            Tensor tt = Tensors.follow(t == Math.rint(t) ? torch.full(new long[] {in.size(0)}, new Scalar((long) t)).to(torch.ScalarType.Long)
                : torch.full(new long[] {in.size(0)}, new Scalar((float) t), Tensors.floatOptions()), zT);
            Tensor out = model.apply(in, tt, cond);
            return cfg ? combine(out.narrow(0, 0, n), out.narrow(0, n, n), g) : out;          // [n, C, h, w]
        };
    }
}
