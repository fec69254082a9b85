package org.pixelpost.objective;

import java.util.LinkedHashMap;
import java.util.Map;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorVector;
import org.bytedeco.pytorch.global.torch;
import org.pixelpost.model.denoiser.Denoiser;
import org.pixelpost.tensor.Tensors;

/**
 * A preference objective on winner/loser pairs: {@code -log sigma(margin)} on the latent errors,
 * and the same on the pixel errors, combined as {@code L_latent + mu L_pixel} (Eq. 7). Winner and
 * loser of a pair share the noise and the timestep (one forward over {@code [winners; losers]}).
 * A new preference objective says only what its margin is and whether it needs a reference.
 */
public interface PreferenceObjective extends Objective {
    double latentWeight();

    PixelTerm pixel();

    /** The frozen reference model, or null when the margin needs none. */
    Denoiser reference();

    /** Per-pair margin {@code [P]} from per-pair errors (reference errors null without a reference). */
    Tensor margin(Tensor modelW, Tensor modelL, Tensor refW, Tensor refL);

    @Override
    default boolean preference() {
        return true;
    }

    @Override
    default Loss loss(StepContext ctx, Batch batch) {
        if (!batch.isPairs()) throw new IllegalArgumentException(getClass().getSimpleName() + " needs winner/loser pairs");
        Tensor zW = batch.z(), zL = batch.zLoser();
        long b = zW.size(0);
        Tensor t = Tensors.follow(ctx.gen().randint(ctx.schedule().numTrainTimesteps(), b), zW);              // [P]
        Tensor eps = ctx.gen().randnLike(zW);                                            // [P, C, h, w]
        Tensor t2 = cat(t, t), eps2 = cat(eps, eps), z2 = cat(zW, zL);                   // [2P, ...]
        Tensor zT2 = ctx.schedule().addNoise(z2, eps2, t2);
        org.pixelpost.model.Conditioning cond2 = batch.cond().concat(batch.cond());            // both halves share the prompt
        Tensor out = ctx.model().forward(zT2, t2, cond2);                           // [2P, C, h, w]
        Tensor target = ctx.schedule().target(ctx.predictionType(), z2, eps2, t2);
        Tensor latent = Objectives.latent(out, target);                                   // [2P]
        Denoiser ref = reference();
        Tensor refLatent = null, refOut = null;
        if (ref != null) {
            try (var g = Tensors.noGrad()) {
                refOut = ref.forward(zT2, t2, cond2);
                refLatent = Objectives.latent(refOut, target);
            }
        }
        Tensor latentMargin = pairMargin(latent, refLatent, b);                          // [P]
        Tensor latentLoss = Objectives.preference(latentMargin);
        Map<String, Double> pixelTerms = new LinkedHashMap<>();
        Tensor pixelLoss = null;
        if (pixel().on()) {
            long[] rows = PixelTarget.rows(ctx, pixel(), b);
            long[] rows2 = new long[rows.length * 2];
            for (int i = 0; i < rows.length; i++) {
                rows2[i] = rows[i];
                rows2[rows.length + i] = rows[i] + b;
            }
            PixelTarget pixelTarget = PixelTarget.of(ctx, pixel(), z2, zT2, t2, rows2);
            Tensor pix = pixelTarget.term(ctx.schedule().epsilon(ctx.predictionType(), out, zT2, t2));
            Tensor refPixel = null;
            if (ref != null) {
                try (var g = Tensors.noGrad()) {
                    refPixel = pixelTarget.term(ctx.schedule().epsilon(ctx.predictionType(), refOut, zT2, t2));
                }
            }
            Tensor pixelMargin = pairMargin(pix, refPixel, rows.length);
            pixelLoss = Objectives.preference(pixelMargin);
            pixelTerms.put("pixel_loss", Tensors.item(pixelLoss));
            pixelTerms.put("pixel_accuracy", Objectives.accuracy(pixelMargin));
            pixelTerms.put("pixel_margin", Tensors.item(pixelMargin.mean()));
        }
        Tensor loss = Objectives.combined(latentWeight() != 0 ? latentLoss : null, pixelLoss, latentWeight(), pixel().weight());
        Map<String, Double> terms = new LinkedHashMap<>();
        terms.put("loss", Tensors.item(loss));
        terms.put("latent_loss", Tensors.item(latentLoss));
        terms.put("accuracy", Objectives.accuracy(latentMargin));
        terms.put("margin", Tensors.item(latentMargin.mean()));
        terms.put("model_w", Tensors.item(latent.narrow(0, 0, b).mean()));
        terms.put("model_l", Tensors.item(latent.narrow(0, b, b).mean()));
        terms.putAll(pixelTerms);
        return new Loss(loss, terms);
    }

    /** Per-pair margins of a term laid out as [winners; losers]. */
    private Tensor pairMargin(Tensor model, Tensor ref, long pairs) {
        Tensor w = model.narrow(0, 0, pairs), l = model.narrow(0, pairs, pairs);
        return ref == null ? margin(w, l, null, null) : margin(w, l, ref.narrow(0, 0, pairs), ref.narrow(0, pairs, pairs));
    }

    private static Tensor cat(Tensor a, Tensor b) {
        return torch.cat(new TensorVector(a, b), 0);
    }
}
