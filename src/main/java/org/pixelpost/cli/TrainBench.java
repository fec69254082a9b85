package org.pixelpost.cli;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.function.UnaryOperator;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.pixelpost.diffusion.NoiseSchedule;
import org.pixelpost.model.TextToImageModel;
import org.pixelpost.model.text.TextEncoder;
import org.pixelpost.objective.PixelDecode;
import org.pixelpost.tensor.Engine;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;
import org.pixelpost.train.AdamW;
import org.pixelpost.train.Steps;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "train", mixinStandardHelpOptions = true,
    description = {"Cost of the pixel term on the tiny DiT + TAEF2 at 64x64: ms per training step latent-only and",
        "latent+pixel, the decoder's own forward and forward+backward on the same batch, peak RSS, and the cost",
        "options (pixel term on part of the batch, on latent crops, chunked decoder) with their effect on the gradient."})
final class TrainBench implements Callable<Integer> {
    @Option(names = "--batch", defaultValue = "8") int batch;
    @Option(names = "--iters", defaultValue = "10") int iters;
    @Option(names = "--size", defaultValue = "tiny") String size;
    @Option(names = "--json") boolean json;

    @Override
    public Integer call() throws Exception {
        Engine.seed(0);
        try (TextToImageModel m = TextToImageModel.create(size, "taef2", 64, 1.0)) {
            NoiseSchedule schedule = m.scheduler.schedule();
            UnaryOperator<Tensor> decode = m.autoencoder::decode;
            Map<String, Tensor> params = m.denoiser.parameters();
            AdamW opt = new AdamW(params, 0.9, 0.999, 1e-8, 5e-6);

            Map<String, Object> o = new LinkedHashMap<>();
            double latentMs = stepMs(m, opt, options(schedule, decode, 0, 1, 0, 0));
            Tensor z = this.z;
            double pixelMs = stepMs(m, opt, options(schedule, decode, 8, 1, 0, 0));
            double decodeMs, decodeBackMs;
            try (var g = Tensors.noGrad()) {
                decodeMs = BenchCommand.medianMs(2, iters, () -> decode.apply(z));
            }
            Tensor r = torch.randn(batch, 3, 64, 64);
            decodeBackMs = BenchCommand.medianMs(2, iters, () -> decode.apply(z.detach().set_requires_grad(true)).mul(r).sum().backward());
            o.put("denoiser", size);
            o.put("batch", batch);
            o.put("threads", Engine.threads());
            o.put("latent_ms", round(latentMs));
            o.put("pixel_ms", round(pixelMs));
            o.put("ratio", round(pixelMs / latentMs));
            o.put("decode_ms", round(decodeMs));
            o.put("decode_backward_ms", round(decodeBackMs));
            o.put("pixel_overhead_vs_decoder", round((pixelMs - latentMs) / (decodeMs + decodeBackMs)));

            // cost options: time per step, and how closely the step's gradient follows the full pixel term's
            Map<String, Object> options = new LinkedHashMap<>();
            options.put("pixel_fraction_0.5", option(m, opt, schedule, decode, options(schedule, decode, 8, 0.5, 0, 0)));
            options.put("pixel_crop_4_margin_1", option(m, opt, schedule, decode, options(schedule, decode, 8, 1, 4, 0)));
            options.put("decoder_chunk_2", option(m, opt, schedule, decode, options(schedule, decode, 8, 1, 0, 2)));
            o.put("options", options);
            o.put("peak_rss_mib", Math.round(BenchCommand.peakRssMiB()));
            if (json) System.out.println(Json.write(o));
            else o.forEach((k, v) -> System.out.printf("%-28s %s%n", k, v));
            return 0;
        }
    }

    private Steps.Options options(NoiseSchedule s, UnaryOperator<Tensor> decode, double lambda, double fraction, int crop, int chunk) {
        return new Steps.Options(s, decode, 1, lambda, PixelDecode.T, fraction, crop, 1, chunk, false, 0, 0);
    }

    private Tensor z, tokens, mask;

    /** Median ms of a full training step (forward, backward, AdamW) with the given options. */
    private double stepMs(TextToImageModel m, AdamW opt, Steps.Options o) {
        ensureBatch(m);
        return BenchCommand.medianMs(2, iters, () -> {
            Steps.Result res = Steps.sft(m.denoiser, o, z, tokens, mask);
            res.loss().backward();
            opt.step(0); // lr 0: the full update's cost, the weights unchanged
            opt.zeroGrad();
        });
    }

    private void ensureBatch(TextToImageModel m) {
        if (z != null) return;
        Engine.seed(1);
        z = torch.randn(batch, m.autoencoder.latentChannels(), 8, 8);
        z.retainReference();
        List<String> caps = new ArrayList<>();
        for (int i = 0; i < batch; i++) caps.add("emoji number " + i);
        TextEncoder.Encoded e = m.textEncoder.encode(caps);
        tokens = e.tokens();
        mask = e.mask();
        tokens.retainReference();
        mask.retainReference();
    }

    /** ms per step, and the cosine between this option's pixel-term gradient and the full one over 5 draws. */
    private Map<String, Object> option(TextToImageModel m, AdamW opt, NoiseSchedule s, UnaryOperator<Tensor> decode, Steps.Options o) {
        Map<String, Object> r = new LinkedHashMap<>();
        r.put("ms", round(stepMs(m, opt, o)));
        double cos = 0, rel = 0;
        int draws = 5;
        // pixel term alone (latent weight 0), so the comparison is of the pixel term's own signal
        Steps.Options fullPix = new Steps.Options(s, decode, 0, 1, PixelDecode.T, 1, 0, 1, 0, false, 0, 0);
        Steps.Options optPix = new Steps.Options(s, decode, 0, 1, PixelDecode.T, o.pixelFraction(), o.pixelCrop(), o.pixelCropMargin(), o.decoderChunk(), false, 0, 0);
        for (int d = 0; d < draws; d++) {
            try (Scope sc = Scope.open()) {
                Engine.seed(100 + d);
                Steps.Result a = Steps.sft(m.denoiser, fullPix, z, tokens, mask);
                a.loss().backward();
                Tensor ga = flatGrad(m);
                opt.zeroGrad();
                Engine.seed(100 + d);
                Steps.Result b = Steps.sft(m.denoiser, optPix, z, tokens, mask);
                b.loss().backward();
                Tensor gb = flatGrad(m);
                opt.zeroGrad();
                cos += Tensors.item(ga.dot(gb).div(ga.norm().mul(gb.norm())));
                rel += Math.abs(b.terms().get("pixel") - a.terms().get("pixel")) / a.terms().get("pixel");
            }
        }
        r.put("gradient_cosine", round(cos / draws));
        r.put("pixel_term_rel_diff", round(rel / draws));
        return r;
    }

    private static Tensor flatGrad(TextToImageModel m) {
        List<Tensor> gs = new ArrayList<>();
        for (Tensor p : m.denoiser.parameters().values()) gs.add(p.grad().defined() ? p.grad().flatten() : torch.zeros(p.numel()));
        return torch.cat(new org.bytedeco.pytorch.TensorVector(gs.toArray(new Tensor[0])));
    }

    private static double round(double v) {
        return Math.round(v * 1000) / 1000.0;
    }
}
