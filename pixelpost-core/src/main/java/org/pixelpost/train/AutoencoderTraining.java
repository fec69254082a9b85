package org.pixelpost.train;

import com.fasterxml.jackson.databind.ObjectMapper;
import com.fasterxml.jackson.databind.node.ObjectNode;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.TensorVector;
import org.bytedeco.pytorch.global.torch;
import org.pixelpost.io.AtomicFiles;
import org.pixelpost.io.Images;
import org.pixelpost.io.check.BadFileException;
import org.pixelpost.io.check.InvalidValueException;
import org.pixelpost.metrics.Metrics;
import org.pixelpost.model.autoencoder.Autoencoder.Posterior;
import org.pixelpost.model.autoencoder.AutoencoderKL;
import org.pixelpost.tensor.Generator;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;

/**
 * Trains an {@link AutoencoderKL} (diffusers' layout, so the result loads as a VAE elsewhere) on a
 * folder of images, as the LDM first stage is trained but without its GAN:
 *
 * <pre>
 *   z ~ q(z | x) = N(mu, sigma^2)            (reparameterised)
 *   L = rec(x, D(z)) + w_lap * sum_l |L_l(x) - L_l(D(z))| + w_kl * KL(q || N(0, I))
 * </pre>
 *
 * {@code rec} is L1 or L2 per pixel; {@code L_l} are the Laplacian-pyramid bands (the detail a
 * per-pixel loss under-weights); the KL is summed over latent elements and divided by the
 * image's elements, so {@code w_kl = 1e-6} weighs it as SD's VAE did against its per-image summed
 * reconstruction loss. Without the adversarial term reconstructions are blurrier than SD's VAE at
 * the same compression: fine texture the decoder cannot infer is averaged, not invented.
 *
 * <p>At the end {@code scaling_factor} is set to {@code 1 / std} of the encoded training latents
 * (the posterior mean, as {@code encode} returns), so that diffusion runs on unit-variance latents,
 * as SD's 0.18215 does. Randomness of step {@code s} (batch and posterior noise) is drawn from a
 * generator seeded by {@code (seed, s)}, so a resumed run is bit for bit the uninterrupted one.
 */
public final class AutoencoderTraining {
    /** How often a run folder is rewritten and what the run trains. */
    public record Config(Path data, Path valData, Path out, AutoencoderKL.Config model, int imageSize, int steps, int batchSize,
                         double lr, int warmupSteps, String loss, double laplacianWeight, double klWeight, double gradClip, long seed,
                         int checkpointEvery, int keepCheckpoints, int logEvery, String resume) {
        public Config {
            if (data == null) throw new InvalidValueException("data", "is required");
            if (out == null) throw new InvalidValueException("out", "is required");
            if (!loss.equals("l1") && !loss.equals("l2")) throw new InvalidValueException("loss", "'" + loss + "' is not l1 or l2");
            if (steps < 1) throw new InvalidValueException("steps", steps + " is not a positive number of steps");
            if (batchSize < 1) throw new InvalidValueException("batch_size", batchSize + " is not a positive batch size");
            if (!(lr > 0)) throw new InvalidValueException("lr", lr + " is not a positive learning rate");
            if (laplacianWeight < 0) throw new InvalidValueException("laplacian_weight", laplacianWeight + " is negative");
            if (klWeight < 0) throw new InvalidValueException("kl_weight", klWeight + " is negative");
            int f = 1 << (model.blockOutChannels().size() - 1);
            if (imageSize <= 0 || imageSize % f != 0)
                throw new InvalidValueException("image_size", imageSize + " is not a positive multiple of the downsampling factor " + f);
            for (int c : model.blockOutChannels())
                if (c % model.normNumGroups() != 0)
                    throw new InvalidValueException("block_out_channels", c + " channels do not divide into " + model.normNumGroups() + " norm groups");
        }
    }

    /** Progress of a run. */
    public interface Listener {
        void step(long step, long total, Map<String, Double> terms);

        void message(String text);
    }

    /** What a finished run reports: {@code steps} the budget, {@code stepsRun} the steps this call ran, {@code seconds} its wall time. */
    public record Summary(Path model, long steps, long stepsRun, double seconds, double scalingFactor, double latentStd, Double valPsnr,
                          Map<String, Double> lastTerms) {}

    private static final List<String> PARTS = List.of("model", "optimizer");
    private final Config c;
    private final Listener listener;
    /** Steps this call ran (fewer than the budget after a resume). */
    private long stepsRun;

    public AutoencoderTraining(Config c, Listener listener) {
        this.c = c;
        this.listener = listener;
    }

    public Summary run() throws IOException {
        long t0 = System.nanoTime();
        Checkpointer ckpts = new Checkpointer(c.out.resolve("checkpoints"), c.checkpointEvery, Math.max(1, c.keepCheckpoints));
        Path resumeFrom = c.resume == null || c.resume.isBlank() ? null : ckpts.resolve(c.resume);
        if (resumeFrom == null && !ckpts.list().isEmpty())
            throw new IOException(c.out + ": holds checkpoints of an earlier run; pass --resume latest to continue it, or choose another --out");
        if (Files.isDirectory(c.out.resolve("model")))
            throw new IOException(c.out + ": already holds a trained model/ (the run is finished); choose another --out");
        if (resumeFrom != null) checkSameRun(resumeFrom);
        Tensor train = loadImages(c.data, "DATA", c.imageSize);
        Tensor val;
        try {
            val = c.valData == null ? null : loadImages(c.valData, "--val-data", c.imageSize);
        } catch (IOException | RuntimeException e) {
            train.releaseReference();
            throw e;
        }
        listener.message(String.format("%d training images%s at %dx%d; latent %dx%dx%d (%.0fx compression)", train.size(0),
            val == null ? "" : ", " + val.size(0) + " held out", c.imageSize, c.imageSize, c.imageSize / factor(), c.imageSize / factor(),
            c.model.latentChannels(), 3.0 * factor() * factor() / c.model.latentChannels()));
        Files.createDirectories(c.out);
        AtomicFiles.writeString(c.out.resolve("config.json"), toJson().toPrettyString());
        AutoencoderKL ae;
        try (Scope s = Scope.open()) {
            org.pixelpost.tensor.Engine.seed(c.seed); // the default initialisation draws from libtorch's global generator
            ae = new AutoencoderKL(c.model);
        }
        try {
            Map<String, Tensor> params = ae.stateDict();
            for (Tensor p : params.values()) p.set_requires_grad(true);
            try (AdamW opt = new AdamW(params, 0.9, 0.999, 1e-8, 0.0)) {
                FlatParameters flat = opt.flat();
                long start = 0;
                if (resumeFrom != null) {
                    try (Scope s = Scope.open()) {
                        Checkpointer.Loaded l = Checkpointer.read(resumeFrom, PARTS);
                        if (!l.parts().containsKey("model") || !l.parts().containsKey("optimizer"))
                            throw new BadFileException(resumeFrom, "not an autoencoder training checkpoint (model and optimizer expected)");
                        try (var g = Tensors.noGrad()) {
                            for (Map.Entry<String, Tensor> e : params.entrySet()) {
                                Tensor t = l.parts().get("model").get(e.getKey());
                                if (t == null || !java.util.Arrays.equals(Tensors.shape(t), Tensors.shape(e.getValue())))
                                    throw new BadFileException(resumeFrom, "weight " + e.getKey() + " is missing or has another shape: another architecture's checkpoint");
                                e.getValue().copy_(t);
                            }
                        }
                        opt.load(l.parts().get("optimizer"));
                        start = l.state().path("step").asLong();
                    }
                    org.pixelpost.io.JsonLines.keepUpToStep(c.out.resolve("metrics.jsonl"), start);
                    listener.message("resumed from " + resumeFrom + " at step " + start);
                } else {
                    Files.deleteIfExists(c.out.resolve("metrics.jsonl"));
                }
                LrSchedule lr = new LrSchedule(c.lr, c.warmupSteps, c.steps, false);
                Map<String, Double> terms = Map.of();
                for (long step = start + 1; step <= c.steps; step++) {
                    try (Scope s = Scope.open()) {
                        terms = step(ae, train, step);
                        terms.put("grad_norm", flat.clipGradNorm(c.gradClip));
                        terms.put("lr", lr.at(step));
                        opt.step(lr.at(step));
                        opt.zeroGrad();
                    }
                    Map<String, Double> shown = new LinkedHashMap<>(terms);
                    Double psnr = null;
                    if (ckpts.due(step, c.steps)) {
                        if (val != null) shown.put("val_psnr", psnr = psnr(ae, val));
                        try (Scope s = Scope.open()) { // the optimizer's named views are freed once written
                            Map<String, Map<String, Tensor>> parts = new LinkedHashMap<>();
                            parts.put("model", params);
                            parts.put("optimizer", opt.state());
                            ckpts.save(step, parts, new ObjectMapper().createObjectNode().put("step", step).put("seed", c.seed));
                        }
                    }
                    if (step % Math.max(1, c.logEvery) == 0 || step == c.steps || psnr != null) log(step, shown);
                    listener.step(step, c.steps, shown);
                }
                stepsRun = c.steps - start;
                return finish(ae, train, val, t0, terms);
            }
        } finally {
            ae.close();
            train.releaseReference();
            if (val != null) val.releaseReference();
        }
    }

    /**
     * A resumed run must be the run its checkpoints belong to: the same settings (the step budget
     * may grow) and a checkpoint within the budget.
     */
    private void checkSameRun(Path ckpt) throws IOException {
        Path f = c.out.resolve("config.json");
        if (Files.isRegularFile(f)) {
            ObjectNode was = (ObjectNode) new ObjectMapper().readTree(f.toFile()), now = toJson();
            was.remove("steps");
            now.remove("steps");
            for (var it = now.fieldNames(); it.hasNext(); ) {
                String k = it.next();
                if (!now.get(k).toString().equals(String.valueOf(was.get(k)))) // as written: 7 and 7L are one setting
                    throw new InvalidValueException(k, "is " + now.get(k) + " but the run in " + c.out + " was started with " + was.get(k)
                        + "; resume with the run's own settings");
            }
        }
        long at = new ObjectMapper().readTree(ckpt.resolve(Checkpointer.STATE).toFile()).path("step").asLong();
        if (at > c.steps) throw new InvalidValueException("steps", c.steps + " is below the checkpoint's step " + at);
    }

    /** One step's loss and its backward; the terms as numbers. */
    private Map<String, Double> step(AutoencoderKL ae, Tensor images, long step) {
        try (Generator g = Generator.seeded(Generator.mix(c.seed, step))) {
            Tensor idx = g.randint(images.size(0), c.batchSize);
            Tensor x = unit(images.index_select(0, idx));                                     // [B, 3, H, W] in [0, 1]
            Posterior q = ae.rawPosterior(x);                                                 // mean, logvar [B, C, h, w]
            Tensor eps = g.randnLike(q.mean());
            Tensor z = q.mean().add(q.std().mul(eps));                                        // [B, C, h, w]
            Tensor xHat = ae.decodeRaw(z);                                                    // [B, 3, H, W]
            Tensor diff = xHat.sub(x);
            Tensor rec = c.loss.equals("l1") ? diff.abs().mean() : diff.square().mean();
            Tensor lap = Tensors.scalarTensor(0);
            List<Tensor> bx = Metrics.laplacianPyramid(x, 3), bh = Metrics.laplacianPyramid(xHat, 3);
            for (int l = 0; l < bx.size() - 1; l++) lap = lap.add(bh.get(l).sub(bx.get(l)).abs().mean()); // the detail bands
            // KL(N(mu, sigma^2) || N(0, 1)) summed over latent elements, per image element
            Tensor kl = q.mean().square().add(q.logvar().exp()).sub(Tensors.s(1)).sub(q.logvar()).sum().mul(Tensors.s(0.5))
                .div(Tensors.s((double) x.numel()));
            Tensor loss = rec.add(lap.mul(Tensors.s(c.laplacianWeight))).add(kl.mul(Tensors.s(c.klWeight)));
            loss.backward();
            Map<String, Double> t = new LinkedHashMap<>();
            double value = Tensors.item(loss);
            if (!Double.isFinite(value)) throw new IllegalStateException("step " + step + ": the loss is " + value + "; lower --lr or --grad-clip");
            t.put("loss", value);
            t.put("rec", Tensors.item(rec));
            t.put("laplacian", Tensors.item(lap));
            t.put("kl", Tensors.item(kl) * x.numel() / x.size(0)); // per image, as the LDM logs it
            return t;
        }
    }

    private Summary finish(AutoencoderKL ae, Tensor train, Tensor val, long t0, Map<String, Double> terms) throws IOException {
        double std;
        try (Scope s = Scope.open(); var g = Tensors.noGrad()) {
            // up to 1,024 images evenly spaced over the set, so that a set sorted by category is sampled across it
            long n = train.size(0), k = Math.min(n, 1024);
            Tensor pick = torch.linspace(new org.bytedeco.pytorch.Scalar(0), new org.bytedeco.pytorch.Scalar(n - 1), k).round().to(torch.ScalarType.Long);
            Tensor sample = train.index_select(0, pick);
            List<Tensor> parts = new ArrayList<>();
            for (long i = 0; i < k; i += 64) {
                parts.add(ae.rawPosterior(unit(sample.narrow(0, i, Math.min(64, k - i)))).mean());
            }
            std = Tensors.item(torch.cat(new TensorVector(parts.toArray(new Tensor[0])), 0).std());
        }
        double scaling = 1 / std;
        Path model = c.out.resolve("model"), tmp = c.out.resolve(".model.tmp");
        AtomicFiles.deleteTree(tmp);
        ae.save(tmp, AutoencoderKL.withScaling(c.model, scaling));
        Files.move(tmp, model, StandardCopyOption.ATOMIC_MOVE);
        Double psnr = val == null ? null : psnr(ae, val);
        if (val != null) writeGrid(ae, val, c.out.resolve("reconstructions.png"));
        listener.message(String.format("latent std on the training images %.4f: scaling_factor %.5f; model in %s", std, scaling, model));
        return new Summary(model, c.steps, stepsRun, (System.nanoTime() - t0) / 1e9, scaling, std, psnr, terms);
    }

    /** Mean PSNR (dB) of {@code model}'s reconstructions of the images of {@code dir} at {@code size}. */
    public static double psnr(Path model, Path dir, int size) throws IOException {
        Tensor images = loadImages(dir, "held-out images", size);
        try (AutoencoderKL ae = AutoencoderKL.load(model)) {
            return psnr(ae, images);
        } finally {
            images.releaseReference();
        }
    }

    /** Mean PSNR (dB) of the clamped reconstructions through the posterior mean. */
    static double psnr(AutoencoderKL ae, Tensor images) {
        double sum = 0;
        try (Scope s = Scope.open(); var g = Tensors.noGrad()) {
            for (long i = 0; i < images.size(0); i += 64) {
                Tensor x = unit(images.narrow(0, i, Math.min(64, images.size(0) - i)));
                Tensor y = reconstruct(ae, x);
                for (long j = 0; j < x.size(0); j++) sum += Images.psnr(x.select(0, j), y.select(0, j));
            }
        }
        return sum / images.size(0);
    }

    private void writeGrid(AutoencoderKL ae, Tensor images, Path file) throws IOException {
        try (Scope s = Scope.open(); var g = Tensors.noGrad()) {
            Tensor x = unit(images.narrow(0, 0, Math.min(16, images.size(0))));
            Tensor y = reconstruct(ae, x);
            List<java.awt.image.BufferedImage> tiles = new ArrayList<>();
            for (long j = 0; j < x.size(0); j++) {
                tiles.add(Images.toImage(x.select(0, j)));
                tiles.add(Images.toImage(y.select(0, j)));
            }
            java.awt.image.BufferedImage grid = Images.grid(tiles, 8, 2);
            AtomicFiles.write(file, t -> Images.writePng(t, grid));
        }
    }

    /** 8-bit images as float32 in [0, 1]. */
    static Tensor unit(Tensor u8) {
        return u8.to(torch.ScalarType.Float).div(Tensors.s(255));
    }

    /** The clamped reconstruction through the posterior mean. */
    static Tensor reconstruct(AutoencoderKL ae, Tensor x) {
        return Tensors.clamp(ae.decodeRaw(ae.rawPosterior(x).mean()), 0, 1);
    }

    private int factor() {
        return 1 << (c.model.blockOutChannels().size() - 1);
    }

    /** The images of {@code dir} (those its {@code captions.jsonl} lists, or every PNG or JPEG under it, sorted by path), resized and centre-cropped, as uint8 {@code [N, 3, S, S]}. */
    static Tensor loadImages(Path dir, String option, int size) throws IOException {
        if (!Files.isDirectory(dir)) throw new BadFileException(dir, "no such image folder (" + option + ")");
        List<Path> files = org.pixelpost.data.ImageCaptionSet.imageFiles(dir, true);
        if (files.isEmpty()) throw new BadFileException(dir, "no PNG or JPEG images (" + option + ")");
        List<Tensor> xs = new ArrayList<>();
        Tensor all;
        try (Scope s = Scope.open()) {
            for (Path f : files) {
                try {
                    xs.add(Images.load(f, size).mul(Tensors.s(255)).round().to(torch.ScalarType.Byte));
                } catch (IOException e) {
                    throw new BadFileException(f, "cannot read this image (" + e.getMessage() + ")");
                }
            }
            all = torch.stack(new TensorVector(xs.toArray(new Tensor[0])));
            all.retainReference();
        }
        return all;
    }

    private void log(long step, Map<String, Double> terms) throws IOException {
        ObjectNode j = new ObjectMapper().createObjectNode().put("step", step);
        terms.forEach(j::put);
        Files.writeString(c.out.resolve("metrics.jsonl"), j + "\n", StandardOpenOption.CREATE, StandardOpenOption.APPEND);
    }

    /** The run's settings, as {@code config.json}. */
    public ObjectNode toJson() {
        ObjectNode j = new ObjectMapper().createObjectNode();
        j.put("data", c.data.toString()).put("val_data", c.valData == null ? null : c.valData.toString()).put("image_size", c.imageSize)
            .put("steps", c.steps).put("batch_size", c.batchSize).put("lr", c.lr).put("warmup_steps", c.warmupSteps).put("loss", c.loss)
            .put("laplacian_weight", c.laplacianWeight).put("kl_weight", c.klWeight).put("grad_clip", c.gradClip).put("seed", c.seed)
            .put("adversarial", false);
        j.set("model", c.model.toJson());
        return j;
    }
}
