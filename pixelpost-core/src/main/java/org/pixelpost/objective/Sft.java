package org.pixelpost.objective;

import java.util.LinkedHashMap;
import java.util.Map;
import org.bytedeco.pytorch.Tensor;
import org.pixelpost.tensor.Tensors;

/** Supervised fine-tuning, Eq. 3: {@code latentWeight * L_latent + lambda * L_pixel}. */
public record Sft(double latentWeight, PixelTerm pixel) implements Objective {
    public Sft {
        Objectives.checkWeights(latentWeight, pixel);
    }

    @Override
    public Loss loss(StepContext ctx, Batch batch) {
        Tensor z = batch.z();
        long b = z.size(0);
        Tensor t = Tensors.follow(ctx.gen().randint(ctx.schedule().numTrainTimesteps(), b), z);              // [B]
        Tensor eps = ctx.gen().randnLike(z);                                             // [B, C, h, w]
        Tensor zT = ctx.schedule().addNoise(z, eps, t);                                  // [B, C, h, w]
        Tensor out = ctx.model().forward(zT, t, batch.cond());           // [B, C, h, w]
        Tensor latent = Objectives.latent(out, ctx.schedule().target(ctx.predictionType(), z, eps, t)); // [B]
        Tensor pixelTerm = null;
        if (pixel.on()) {
            PixelTarget target = PixelTarget.of(ctx, pixel, z, zT, t, PixelTarget.rows(ctx, pixel, b));
            pixelTerm = target.term(ctx.schedule().epsilon(ctx.predictionType(), out, zT, t)); // [B']
        }
        Tensor loss = Objectives.sft(latentWeight != 0 ? latent : null, pixelTerm, latentWeight, pixel.weight());
        Map<String, Double> terms = new LinkedHashMap<>();
        terms.put("loss", Tensors.item(loss));
        terms.put("latent", Tensors.item(latent.mean()));
        if (pixelTerm != null) terms.put("pixel", Tensors.item(pixelTerm.mean()));
        return new Loss(loss, terms);
    }
}
