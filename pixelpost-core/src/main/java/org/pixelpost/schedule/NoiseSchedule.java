package org.pixelpost.schedule;

import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.bytedeco.pytorch.global.torch.ScalarType;
import org.pixelpost.tensor.Engine;
import org.pixelpost.tensor.Tensors;

/**
 * The forward process {@code z_t = sqrt(alphaBar_t) z + sqrt(1 - alphaBar_t) eps} over
 * {@code numTrainTimesteps} discrete steps. Betas are computed in float32 exactly as the reference
 * library computes them, so {@code alphaBar} agrees bit for bit.
 */
public final class NoiseSchedule {
    private final float[] betas, alphaBar;
    private final Tensor alphaBarTensor;

    public NoiseSchedule(float[] betas) {
        Engine.start();
        this.betas = betas.clone();
        // torch.cumprod itself, so that alphaBar is the reference library's to the last bit
        this.alphaBarTensor = torch.cumprod(Tensors.fromFloats(betas, betas.length).neg().add(Tensors.s(1)), 0);
        alphaBarTensor.retainReference();
        this.alphaBar = Tensors.toFloats(alphaBarTensor);
    }

    /** {@code linear}, {@code scaled_linear} or {@code squaredcos_cap_v2}; zero-SNR rescaling optional. */
    public static NoiseSchedule of(String betaSchedule, int numTrainTimesteps, double betaStart, double betaEnd, boolean rescaleBetasZeroSnr) {
        float[] b = switch (betaSchedule) {
            case "linear" -> linspace(betaStart, betaEnd, numTrainTimesteps, false);
            case "scaled_linear" -> linspace(Math.sqrt(betaStart), Math.sqrt(betaEnd), numTrainTimesteps, true);
            case "squaredcos_cap_v2" -> cosine(numTrainTimesteps);
            default -> throw new IllegalArgumentException("beta_schedule '" + betaSchedule + "' is not one of linear, scaled_linear, squaredcos_cap_v2");
        };
        if (rescaleBetasZeroSnr) b = rescaleZeroTerminalSnr(b);
        return new NoiseSchedule(b);
    }

    /** The schedule of Stable Diffusion and PixArt: scaled_linear from 0.00085 to 0.012 over 1000 steps. */
    public static NoiseSchedule sd() {
        return of("scaled_linear", 1000, 0.00085, 0.012, false);
    }

    private static float[] linspace(double a, double b, int n, boolean square) {
        float[] v;
        try (var s = org.pixelpost.tensor.Scope.open()) {
            Tensor t = torch.linspace(new org.bytedeco.pytorch.Scalar(a), new org.bytedeco.pytorch.Scalar(b), n, Tensors.floatOptions());
            if (square) t = t.pow(new org.bytedeco.pytorch.Scalar(2.0));
            v = Tensors.toFloats(t);
        }
        return v;
    }

    /** Glide's cosine schedule: betas from alphaBar(t) = cos((t + 0.008) / 1.008 * pi / 2)^2, capped at 0.999. */
    private static float[] cosine(int n) {
        float[] b = new float[n];
        for (int i = 0; i < n; i++) {
            double t1 = (double) i / n, t2 = (double) (i + 1) / n;
            b[i] = (float) Math.min(1 - cosBar(t2) / cosBar(t1), 0.999);
        }
        return b;
    }

    private static double cosBar(double t) {
        double c = Math.cos((t + 0.008) / 1.008 * Math.PI / 2);
        return c * c;
    }

    /** Rescales so that the last step has zero SNR (Lin et al. 2023), as the reference library does. */
    static float[] rescaleZeroTerminalSnr(float[] betas) {
        int n = betas.length;
        try (var s = org.pixelpost.tensor.Scope.open()) {
            Tensor sqrtBar = torch.cumprod(Tensors.fromFloats(betas, n).neg().add(Tensors.s(1)), 0).sqrt();
            Tensor first = sqrtBar.narrow(0, 0, 1).clone(), last = sqrtBar.narrow(0, n - 1, 1).clone();
            sqrtBar = sqrtBar.sub(last).mul(first.div(first.sub(last)));
            Tensor bar = sqrtBar.square();
            Tensor alphas = torch.cat(new org.bytedeco.pytorch.TensorVector(bar.narrow(0, 0, 1), bar.narrow(0, 1, n - 1).div(bar.narrow(0, 0, n - 1))), 0);
            return Tensors.toFloats(alphas.neg().add(Tensors.s(1)));
        }
    }

    public int numTrainTimesteps() {
        return betas.length;
    }

    public double beta(int t) {
        return betas[t];
    }

    public double alphaBar(int t) {
        return alphaBar[t];
    }

    /** Signal-to-noise ratio {@code alphaBar / (1 - alphaBar)}. */
    public double snr(int t) {
        return alphaBar[t] / (1.0 - alphaBar[t]);
    }

    /** {@code alphaBar_t / (1 - alphaBar_t)} per batch element {@code [B]}, e.g. for SNR-weighted losses. */
    public Tensor snr(Tensor t) {
        Tensor a = Tensors.follow(alphaBarTensor, t).gather(0, t.to(ScalarType.Long).reshape(-1)); // [B]
        return a.div(a.neg().add(Tensors.s(1)));
    }

    /** {@code sqrt(alphaBar_t)} and {@code sqrt(1 - alphaBar_t)} per batch element, shaped to broadcast against {@code like}. */
    private Tensor[] coefficients(Tensor t, Tensor like) {
        Tensor a = Tensors.follow(alphaBarTensor, t).gather(0, t.to(ScalarType.Long).reshape(-1)); // [B]
        long[] shape = new long[(int) like.dim()];
        java.util.Arrays.fill(shape, 1);
        shape[0] = -1;
        Tensor sa = a.sqrt().view(shape).to(like.scalar_type());
        Tensor sb = a.neg().add(Tensors.s(1)).sqrt().view(shape).to(like.scalar_type());
        return new Tensor[] {sa, sb};
    }

    /** {@code z_t = sqrt(alphaBar_t) z + sqrt(1 - alphaBar_t) eps}; {@code t} holds one timestep per batch element. */
    public Tensor addNoise(Tensor z, Tensor eps, Tensor t) {
        Tensor[] c = coefficients(t, z);
        return c[0].mul(z).add(c[1].mul(eps));
    }

    /** The v-prediction target {@code sqrt(alphaBar) eps - sqrt(1 - alphaBar) z}. */
    public Tensor velocity(Tensor z, Tensor eps, Tensor t) {
        Tensor[] c = coefficients(t, z);
        return c[0].mul(eps).sub(c[1].mul(z));
    }

    /** The noise implied by a model output of the given type at {@code z_t}. */
    public Tensor epsilon(PredictionType type, Tensor output, Tensor zT, Tensor t) {
        Tensor[] c = coefficients(t, zT);
        return switch (type) {
            case EPSILON -> output;
            case V_PREDICTION -> c[0].mul(output).add(c[1].mul(zT));
            case SAMPLE -> zT.sub(c[0].mul(output)).div(c[1]);
        };
    }

    /** The clean sample implied by a model output of the given type at {@code z_t}. */
    public Tensor sample(PredictionType type, Tensor output, Tensor zT, Tensor t) {
        Tensor[] c = coefficients(t, zT);
        return switch (type) {
            case EPSILON -> zT.sub(c[1].mul(output)).div(c[0]);
            case V_PREDICTION -> c[0].mul(zT).sub(c[1].mul(output));
            case SAMPLE -> output;
        };
    }

    /** The training target for a model of the given type. */
    public Tensor target(PredictionType type, Tensor z, Tensor eps, Tensor t) {
        return switch (type) {
            case EPSILON -> eps;
            case V_PREDICTION -> velocity(z, eps, t);
            case SAMPLE -> z;
        };
    }
}
