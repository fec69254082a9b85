package org.pixelpost.cli.bench;

import org.pixelpost.cli.Json;
import org.pixelpost.cli.Launcher;
import org.pixelpost.cli.TrainCommand;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import org.bytedeco.pytorch.Tensor;
import org.pixelpost.model.autoencoder.Autoencoder;
import org.pixelpost.model.autoencoder.Autoencoders;
import org.pixelpost.objective.Batch;
import org.pixelpost.objective.PixelTerm;
import org.pixelpost.objective.Sft;
import org.pixelpost.objective.StepContext;
import org.pixelpost.pipeline.TextToImageModel;
import org.pixelpost.tensor.Engine;
import org.pixelpost.tensor.Generator;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "pixel-decoder", mixinStandardHelpOptions = true,
    description = {"How a cheaper pixel decoder changes the pixel term: the cosine between the denoiser's gradient from the",
        "pixel term through the model's own decoder and through --decoder (e.g. TAESD for SD), on the same noisy latents,",
        "timesteps and noise, and the time of each. Uses the model's weights, so run it on a real checkpoint."})
final class PixelDecoderBench implements Callable<Integer> {
    @Option(names = "--model", required = true, description = "model folder or SD single file") Path model;
    @Option(names = "--decoder", required = true, description = "the other autoencoder: a name (taesd) or a path") String decoder;
    @Option(names = "--draws", defaultValue = "4", description = "batches of random latents and timesteps (default: ${DEFAULT-VALUE})") int draws;
    @Option(names = "--batch", defaultValue = "1") int batch;
    @Option(names = "--json") boolean json;

    @Override
    public Integer call() throws Exception {
        org.pixelpost.io.check.Checks.atLeast("--draws", draws, 1);
        org.pixelpost.io.check.Checks.atLeast("--batch", batch, 1);
        Engine.start();
        try (TextToImageModel m = TextToImageModel.load(model); Autoencoder other = Autoencoders.load(decoder)) {
            if (other.latentChannels() != m.autoencoder.latentChannels())
                throw new org.pixelpost.io.check.InvalidValueException("--decoder", other.name() + " takes " + other.latentChannels() + " latent channels, the model "
                    + m.autoencoder.latentChannels());
            Sft pixelOnly = new Sft(0, PixelTerm.of(1));
            double cos = 0, msOwn = 0, msOther = 0;
            int s = m.latentSize();
            for (int d = 0; d < draws; d++) {
                try (Scope sc = Scope.open(); Generator g = Generator.seeded(100 + d)) {
                    Tensor z = g.randn(batch, m.autoencoder.latentChannels(), s, s);
                    var text = m.textEncoder.encode(java.util.Collections.nCopies(batch, ""));
                    Batch b = Batch.of(z, text);
                    long t0 = System.nanoTime();
                    Tensor a = grad(m, pixelOnly, b, new StepContext(m.denoiser, m.noiseSchedule(), m.predictionType(), m::decodeLatents, g.reseed(7 + d)));
                    long t1 = System.nanoTime();
                    Tensor o = grad(m, pixelOnly, b, new StepContext(m.denoiser, m.noiseSchedule(), m.predictionType(),
                        x -> m.decodeLatentsWith(other, x), g.reseed(7 + d)));
                    long t2 = System.nanoTime();
                    cos += Tensors.item(a.dot(o).div(a.norm().mul(o.norm())));
                    msOwn += (t1 - t0) / 1e6;
                    msOther += (t2 - t1) / 1e6;
                }
            }
            Map<String, Object> r = new LinkedHashMap<>();
            r.put("model_decoder", m.autoencoder.name());
            r.put("decoder", other.name());
            r.put("gradient_cosine", Math.round(cos / draws * 1000) / 1000.0);
            r.put("ms_per_step_model_decoder", Math.round(msOwn / draws));
            r.put("ms_per_step_decoder", Math.round(msOther / draws));
            r.put("draws", draws);
            if (json) System.out.println(Json.write(r));
            else r.forEach((k, v) -> System.out.printf("%-26s %s%n", k, v));
        }
        return 0;
    }

    /** The denoiser's flattened gradient from the pixel term alone. */
    private static Tensor grad(TextToImageModel m, Sft objective, Batch b, StepContext ctx) {
        objective.loss(ctx, b).loss().backward();
        List<Tensor> gs = new java.util.ArrayList<>();
        for (Tensor p : m.denoiser.module().parameters().values()) {
            gs.add(p.grad().defined() ? p.grad().flatten().clone() : org.bytedeco.pytorch.global.torch.zeros(p.numel()));
            if (p.grad().defined()) p.grad().zero_();
        }
        return org.bytedeco.pytorch.global.torch.cat(new org.bytedeco.pytorch.TensorVector(gs.toArray(new Tensor[0])));
    }
}
