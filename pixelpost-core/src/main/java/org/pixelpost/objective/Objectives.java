package org.pixelpost.objective;

import java.util.function.UnaryOperator;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.pixelpost.schedule.NoiseSchedule;
import org.pixelpost.tensor.Tensors;

/**
 * The paper's objectives as small functions of tensors. Conventions:
 * <ul>
 * <li>{@code ||a - b||^2} is the mean over the elements of one sample (latent elements for the
 *     latent term, pixels x channels for the pixel term), so terms are per-sample vectors {@code [B]};
 * <li>the pixel term compares images in [-1, 1], the range of the paper's VAEs, so {@code lambda}
 *     and {@code mu} carry over from the paper;
 * <li>for a v-prediction model the latent term compares v with its target and the pixel term uses
 *     the noise the output implies.
 * </ul>
 */
public final class Objectives {
    private Objectives() {}

    /** Eq. 1 per sample: the mean squared error of the model output against its target. */
    public static Tensor latent(Tensor output, Tensor target) {
        return output.sub(target).square().flatten(1, -1).mean(new long[] {1}, false, new org.bytedeco.pytorch.ScalarTypeOptional());
    }

    /** The latent whose decoding the pixel prediction compares: Eq. 2 ({@code t}) or Eq. 8 ({@code x0}). */
    public static Tensor predictedLatent(PixelDecode mode, NoiseSchedule s, Tensor z, Tensor zT, Tensor epsHat, Tensor t) {
        return switch (mode) {
            case T -> s.addNoise(z, epsHat, t);                                                   // sqrt(a) z + sqrt(1-a) epsHat
            case X0 -> s.sample(org.pixelpost.schedule.PredictionType.EPSILON, epsHat, zT, t);   // (z_t - sqrt(1-a) epsHat) / sqrt(a)
        };
    }

    /** The latent whose decoding is the pixel target: {@code z_t} (Eq. 2) or {@code z} (Eq. 8). */
    public static Tensor targetLatent(PixelDecode mode, Tensor z, Tensor zT) {
        return mode == PixelDecode.T ? zT : z;
    }

    /**
     * Eq. 2 per sample: {@code ||D(target) - D(predicted)||^2} with images in [-1, 1]. The target
     * image carries no gradient; the decoder's parameters take none either (it is frozen), but
     * gradients flow through it to {@code predicted}.
     *
     * @param decode model-space latents to images in [0, 1]
     * @param targetImage {@code D(targetLatent)} in [0, 1], computed without gradient
     * @param chunk 0 to decode the whole batch in the graph; otherwise the decoder runs forward and
     *     backward on {@code chunk} samples at a time right here, so only one chunk's activations are
     *     ever alive, and the returned term carries exactly that gradient (each decoded image
     *     depends on its own latent only)
     */
    public static Tensor pixel(UnaryOperator<Tensor> decode, Tensor targetImage, Tensor predicted, int chunk) {
        if (chunk <= 0 || chunk >= predicted.size(0)) return pixelMse(decode.apply(predicted), targetImage);
        long b = predicted.size(0);
        Tensor grad = torch.zeros_like(predicted);
        Tensor value = Tensors.follow(torch.zeros(new long[] {b}, new org.bytedeco.pytorch.TensorOptions(predicted.scalar_type())), predicted);
        for (long i = 0; i < b; i += chunk) {
            long n = Math.min(chunk, b - i);
            try (var s = org.pixelpost.tensor.Scope.open()) {
                Tensor zc = predicted.narrow(0, i, n).detach().set_requires_grad(true);
                Tensor pc = pixelMse(decode.apply(zc), targetImage.narrow(0, i, n));
                pc.sum().backward();
                try (var g = Tensors.noGrad()) {
                    grad.narrow(0, i, n).copy_(zc.grad());
                    value.narrow(0, i, n).copy_(pc.detach());
                }
            }
        }
        // value of the pixel term, gradient grad_i . d(predicted_i): p + <predicted, grad> - <predicted, grad>.detach()
        Tensor lin = predicted.mul(grad).flatten(1, -1).sum(new long[] {1}, false, new org.bytedeco.pytorch.ScalarTypeOptional());
        return value.add(lin).sub(lin.detach());
    }

    /** The rule every objective keeps: some term must carry weight (the latent weight is never negative). */
    public static void checkWeights(double latentWeight, PixelTerm pixel) {
        org.pixelpost.io.check.Checks.nonNegative("latent_weight", latentWeight);
        if (latentWeight == 0 && !pixel.on()) throw new org.pixelpost.io.check.InvalidValueException("pixel_weight", "latent_weight and pixel_weight are both 0");
    }

    /** Per-sample MSE of two [0, 1] image batches, measured in [-1, 1] (four times the [0, 1] value). */
    static Tensor pixelMse(Tensor a, Tensor b) {
        return latent(a, b).mul(Tensors.s(4));
    }

    /** Eq. 3: {@code latentWeight * latent + lambda * pixel}, each averaged over the batch. Null terms are left out. */
    public static Tensor sft(Tensor latent, Tensor pixel, double latentWeight, double lambda) {
        Tensor loss = null;
        if (latent != null && latentWeight != 0) loss = latent.mean().mul(Tensors.s(latentWeight));
        if (pixel != null && lambda != 0) {
            Tensor p = pixel.mean().mul(Tensors.s(lambda));
            loss = loss == null ? p : loss.add(p);
        }
        if (loss == null) throw new IllegalArgumentException("both the latent and the pixel weight are zero");
        return loss;
    }

    /**
     * The argument of the log-sigmoid in Eq. 4 (DPO, with reference) per pair:
     * {@code -beta ((model_w - ref_w) - (model_l - ref_l))}. Positive when the model has moved towards
     * the winner more than the reference; its sign is the implicit accuracy.
     */
    public static Tensor dpoMargin(Tensor modelW, Tensor modelL, Tensor refW, Tensor refL, double beta) {
        return modelW.sub(refW).sub(modelL.sub(refL)).mul(Tensors.s(-beta));
    }

    /** The argument in Eq. 5 (SimPO, no reference) per pair: {@code -beta (model_w - model_l) - gamma}. */
    public static Tensor simpoMargin(Tensor modelW, Tensor modelL, double beta, double gamma) {
        return modelW.sub(modelL).mul(Tensors.s(-beta)).sub(Tensors.s(gamma));
    }

    /** {@code -log sigma(margin)}, averaged over pairs: Eqs. 4-6 given their margins. */
    public static Tensor preference(Tensor margin) {
        return torch.logsigmoid(margin).mean().neg();
    }

    /** Eq. 7 (and its DPO counterpart): {@code L_latent + mu L_pixel}; a null term is left out. */
    public static Tensor combined(Tensor latentLoss, Tensor pixelLoss, double latentWeight, double mu) {
        return sft(latentLoss == null ? null : latentLoss.reshape(1), pixelLoss == null ? null : pixelLoss.reshape(1), latentWeight, mu);
    }

    /** Fraction of pairs with a positive margin. */
    public static double accuracy(Tensor margin) {
        return Tensors.item(margin.gt(Tensors.s(0)).to(torch.ScalarType.Float).mean());
    }
}
