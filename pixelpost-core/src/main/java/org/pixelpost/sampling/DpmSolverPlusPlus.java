package org.pixelpost.sampling;

import java.util.List;
import org.bytedeco.pytorch.Tensor;
import org.pixelpost.tensor.Tensors;

/**
 * DPM-Solver++ (Lu et al. 2022), multistep, in data prediction, as the reference library's
 * {@code DPMSolverMultistepScheduler} with {@code algorithm_type="dpmsolver++"}. With
 * {@code alpha = 1 / sqrt(sigma^2 + 1)}, {@code s = sigma alpha}, {@code lambda = log(alpha / s)} and
 * {@code h = lambda_next - lambda}, the first-order step is {@code x' = (s' / s) x - alpha' (e^-h - 1) x0Hat};
 * the second and third orders correct {@code x0Hat} with the earlier steps' estimates.
 */
public final class DpmSolverPlusPlus {
    private DpmSolverPlusPlus() {}

    /**
     * The order the reference library uses at step {@code i} of {@code steps}: the solver's order,
     * lowered while too few earlier estimates exist ({@code done} steps so far), and at the end
     * ({@code lowerOrderFinal} below 15 steps, or always where the final sigma is 0).
     */
    public static int order(int solverOrder, int i, int steps, int done, boolean lowerOrderFinal, boolean finalSigmaZero, boolean eulerAtFinal) {
        boolean last = i == steps - 1 && (eulerAtFinal || (lowerOrderFinal && steps < 15) || finalSigmaZero);
        boolean secondLast = i == steps - 2 && lowerOrderFinal && steps < 15;
        if (solverOrder == 1 || done < 1 || last) return 1;
        if (solverOrder == 2 || done < 2 || secondLast) return 2;
        return 3;
    }

    /**
     * One step from {@code sigmas[i]} to {@code sigmas[i + 1]}.
     *
     * @param x0Hats the estimates of the clean sample at steps {@code i}, {@code i - 1}, ... (newest first), at least {@code order}
     * @param midpoint {@code solver_type}: midpoint (true) or heun
     */
    public static Tensor step(Tensor x, List<Tensor> x0Hats, float[] sigmas, int i, int order, boolean midpoint) {
        float[] a = new float[4], s = new float[4], l = new float[4]; // at i + 1, i, i - 1, i - 2
        for (int k = 0; k < Math.min(4, i + 2); k++) {
            float sigma = sigmas[i + 1 - k];
            a[k] = (float) (1 / Math.sqrt(sigma * sigma + 1f));
            s[k] = sigma * a[k];
            l[k] = (float) (Math.log(a[k]) - Math.log(s[k]));
        }
        float h = l[0] - l[1];
        float phi = (float) (Math.exp(-h) - 1);                                          // e^-h - 1
        Tensor base = x.mul(Tensors.s(s[0] / s[1]));                                     // (s' / s) x
        Tensor m0 = x0Hats.get(0);
        if (order == 1) return base.sub(m0.mul(Tensors.s(a[0] * phi)));
        float h0 = l[1] - l[2], r0 = h0 / h;
        Tensor m1 = x0Hats.get(1);
        if (order == 2) {
            Tensor d1 = m0.sub(m1).mul(Tensors.s(1 / r0));
            Tensor out = base.sub(m0.mul(Tensors.s(a[0] * phi)));
            return midpoint ? out.sub(d1.mul(Tensors.s(0.5f * a[0] * phi)))
                : out.add(d1.mul(Tensors.s(a[0] * (phi / h + 1))));
        }
        float h1 = l[2] - l[3], r1 = h1 / h;
        Tensor m2 = x0Hats.get(2);
        Tensor d10 = m0.sub(m1).mul(Tensors.s(1 / r0)), d11 = m1.sub(m2).mul(Tensors.s(1 / r1));
        Tensor d1 = d10.add(d10.sub(d11).mul(Tensors.s(r0 / (r0 + r1))));
        Tensor d2 = d10.sub(d11).mul(Tensors.s(1 / (r0 + r1)));
        return base.sub(m0.mul(Tensors.s(a[0] * phi))).add(d1.mul(Tensors.s(a[0] * (phi / h + 1))))
            .sub(d2.mul(Tensors.s(a[0] * ((phi + h) / (h * h) - 0.5f))));
    }

    /** The clean-sample estimate from a model output at {@code sigma}, in the reference library's parameterisation. */
    public static Tensor x0Hat(org.pixelpost.schedule.PredictionType type, Tensor output, Tensor x, float sigma) {
        float a = (float) (1 / Math.sqrt(sigma * sigma + 1f)), s = sigma * a;
        return switch (type) {
            case EPSILON -> x.sub(output.mul(Tensors.s(s))).div(Tensors.s(a));
            case V_PREDICTION -> x.mul(Tensors.s(a)).sub(output.mul(Tensors.s(s)));
            case SAMPLE -> output;
        };
    }
}
