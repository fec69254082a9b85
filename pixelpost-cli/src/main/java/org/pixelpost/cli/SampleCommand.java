package org.pixelpost.cli;

import java.awt.image.BufferedImage;
import java.nio.file.Files;
import java.nio.file.Path;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.Callable;
import org.bytedeco.pytorch.Tensor;
import org.pixelpost.pipeline.SampleFolder;
import org.pixelpost.pipeline.Sampler;
import org.pixelpost.pipeline.StableDiffusion;
import org.pixelpost.io.check.InvalidValueException;
import org.pixelpost.io.check.Checks;
import org.pixelpost.io.Images;
import org.pixelpost.io.run.OutputDir;
import org.pixelpost.pipeline.TextToImageModel;
import org.pixelpost.tensor.Engine;
import picocli.CommandLine.ArgGroup;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "sample", mixinStandardHelpOptions = true,
    description = {"Generate images with DDIM and classifier-free guidance.",
        "Writes PROMPT-IMAGE.png files, grid.png (a row per prompt) and settings.json."})
final class SampleCommand implements Callable<Integer> {
    @Option(names = "--model", required = true, description = "a model folder (PixelPost's, or a diffusers Stable Diffusion folder) or an SD 1.x single file")
    Path model;

    static final class Prompts {
        @Option(names = "--prompt", description = "a prompt (repeatable)") List<String> prompt;
        @Option(names = "--prompts", description = "a file with one prompt per line") Path file;
    }

    @ArgGroup(exclusive = true, multiplicity = "1") Prompts prompts;

    @Option(names = "--steps", defaultValue = "50", description = "sampling steps (default: ${DEFAULT-VALUE})") int steps;
    @Option(names = "--guidance", description = "classifier-free guidance scale; <= 1 disables it (default: 7.5 for Stable Diffusion, 4.5 otherwise)") Double guidanceOption;
    @Option(names = "--negative-prompt", description = "guide away from this prompt instead of the empty one (all prompts)") String negativePrompt;
    @Option(names = "--size", defaultValue = "0", description = "image height and width in pixels (default: the model's; a U-Net takes any multiple of 64)") int size;
    @Option(names = "--width", defaultValue = "0", description = "image width in pixels, for images that are not square (default: the height)") int width;
    @Option(names = "--text-encoder-dtype", defaultValue = "fp32", description = {"T5 (PixArt): fp32, or bf16 in half the memory (T5-XXL: 19.0 GB in fp32, 9.5 GB in bf16);",
        "fp16 is refused, as T5 overflows in it (default: ${DEFAULT-VALUE})"}) String textEncoderDtype;
    @Option(names = "--configs", description = "an original PixArt checkpoint (transformer only): the PixArt-alpha folder whose text_encoder/, tokenizer/ and vae/ it takes") Path configs;
    @Option(names = "--clip-skip", defaultValue = "1", description = "Stable Diffusion: 1 the last CLIP layer, 2 the one before (default: ${DEFAULT-VALUE})") int clipSkip;
    @Option(names = "--weights-dtype", defaultValue = "fp32", description = "fp32, or bf16 to hold the weights in half the memory (default: ${DEFAULT-VALUE})")
    String weightsDtype;
    double guidance;
    @Option(names = "--sampler", defaultValue = "ddim", description = "ddim, euler, euler_a or dpmpp_2m (default: ${DEFAULT-VALUE})") String samplerName;
    @Option(names = "--sampler-option", paramLabel = "KEY=VALUE", description = {"a sampler option in the reference library's names, repeatable: timestep_spacing, steps_offset (all but ddim);",
        "use_karras_sigmas, final_sigmas_type (euler, dpmpp_2m); solver_order, solver_type, lower_order_final, euler_at_final (dpmpp_2m)"})
    List<String> samplerOptions = new ArrayList<>();
    @Option(names = "--eta", defaultValue = "0", description = "DDIM eta: 0 deterministic, 1 DDPM-like (default: ${DEFAULT-VALUE})") double eta;
    @Option(names = "--seed", defaultValue = "0", description = "image i of a prompt starts from noise seeded by seed + i (default: ${DEFAULT-VALUE})") long seed;
    @Option(names = "--num-images", defaultValue = "1", description = "images per prompt (default: ${DEFAULT-VALUE})") int numImages;
    @Option(names = "--batch", defaultValue = "16", description = "images per denoiser batch (default: ${DEFAULT-VALUE})") int batch;
    @Option(names = "--concurrent-batches", defaultValue = "1", paramLabel = "N", description = {"on a CPU with --eta 0, sample each batch as N groups at once, each on its own",
        "thread with the cores shared among them: faster for small models, the same images (default: ${DEFAULT-VALUE})"}) int concurrentBatches;
    @Option(names = "--lora", paramLabel = "FILE[:SCALE]", description = "merge a LoRA (kohya or PEFT file, or a LoRA run folder) at SCALE (default 1); repeatable")
    List<String> loras = new ArrayList<>();
    @Option(names = "--out", required = true, description = "output folder") Path out;
    @Option(names = "--json", description = "print a JSON summary") boolean json;
    @Option(names = "--overwrite", description = "write into --out even if it holds files") boolean overwrite;

    private org.pixelpost.sampling.Samplers.Spec samplerSpec;

    @Override
    public Integer call() throws Exception {
        List<String> list = prompts.file != null ? readPrompts(prompts.file) : prompts.prompt;
        if (list.isEmpty()) throw new IllegalArgumentException("no prompts given");
        Checks.atLeast("--steps", steps, 1);
        if (guidanceOption != null) Checks.finite("--guidance", guidanceOption);
        Checks.atLeast("--size", size, 0);
        Checks.atLeast("--width", width, 0);
        org.pixelpost.model.text.T5TextEncoder.dtype(textEncoderDtype); // refused before anything is written
        Checks.atLeast("--clip-skip", clipSkip, 1);
        Checks.oneOf("--weights-dtype", weightsDtype, "fp32", "bf16");
        Checks.nonNegative("--eta", eta);
        Checks.atLeast("--num-images", numImages, 1);
        Checks.atLeast("--batch", batch, 1);
        Checks.atLeast("--concurrent-batches", concurrentBatches, 1);
        samplerSpec = org.pixelpost.sampling.Samplers.Spec.parse(samplerName, samplerOptions); // refused before any model loads
        org.pixelpost.sampling.Samplers.checkSteps(samplerSpec, steps);
        if (eta != 0 && !samplerSpec.name().equals("ddim")) throw new InvalidValueException("--eta", "applies to --sampler ddim only");
        loras.forEach(l -> LoraCommand.Spec.parse("--lora", l)); // a bad scale is refused before anything is written
        if (size > 0) checkFits(list.size(), Math.max(size, width));
        boolean created = OutputDir.prepare(out, "--out", OutputDir.Existing.MUST_BE_EMPTY, overwrite);
        List<Path> written = new ArrayList<>();
        try {
            return sample(list, written);
        } catch (IOException | RuntimeException e) {
            // nothing half-written: the files of this invocation go, and the folder if it made it
            for (Path f : written) Files.deleteIfExists(f);
            if (created && OutputDir.isEmpty(out)) Files.deleteIfExists(out);
            throw e;
        }
    }

    /**
     * Every image is kept for the grid (as a picture and as a tile of it): refused up front where
     * {@code prompts x --num-images} of them would not fit in the JVM's memory.
     */
    private void checkFits(int prompts, int px) {
        double images = (double) prompts * numImages, bytes = images * px * px * 4 * 2;
        long heap = Runtime.getRuntime().maxMemory();
        if (images > Integer.MAX_VALUE || bytes > heap / 2.0)
            throw new InvalidValueException("--num-images", String.format("%d x %d prompts = %.0f images of %d px need about %.1f GB for the grid, "
                + "more than half the %.1f GB this JVM may use (PIXELPOST_JAVA_OPTS=-Xmx...); sample fewer per run", numImages, prompts, images, px,
                bytes / 1e9, heap / 1e9));
    }

    private int sample(List<String> list, List<Path> written) throws IOException {
        Engine.start();
        long t0 = System.nanoTime();
        org.pixelpost.pipeline.LoadOptions opts = new org.pixelpost.pipeline.LoadOptions(clipSkip, null, null, configs,
            org.pixelpost.model.text.T5TextEncoder.dtype(textEncoderDtype));
        try (TextToImageModel m = TextToImageModel.load(model, opts)) {
            LoraCommand.mergeAll(m, loras, "--lora").forEach(System.err::println); // all read and checked before any is merged
            if (weightsDtype.equals("bf16")) m.toBf16Weights();
            guidance = guidanceOption != null ? guidanceOption : m.family().defaultGuidance();
            String sizeProblem = size == 0 ? null : m.family().sizeProblem(size, m);
            if (sizeProblem != null) throw new InvalidValueException("--size", sizeProblem);
            String widthProblem = width == 0 ? null : m.family().sizeProblem(width, m);
            if (widthProblem != null) throw new InvalidValueException("--width", widthProblem);
            if (size == 0) checkFits(list.size(), m.imageSize); // with --size it was checked before loading
            Sampler sampler = m.sampler();
            Sampler.Settings settings = new Sampler.Settings(steps, guidance, eta, size, width, concurrentBatches, samplerSpec);
            List<String> flat = new ArrayList<>();
            List<long[]> ids = new ArrayList<>();
            for (int p = 0; p < list.size(); p++)
                for (int i = 0; i < numImages; i++) {
                    flat.add(list.get(p));
                    ids.add(new long[] {p, i});
                }
            List<BufferedImage> tiles = new ArrayList<>();
            List<SampleFolder.Image> files = new ArrayList<>();
            ProgressBar bar = new ProgressBar("sampling");
            int total = flat.size() * steps;
            for (int start = 0; start < flat.size(); start += batch) {
                int end = Math.min(flat.size(), start + batch), base = start;
                // image i of a prompt starts from seed + i, so --batch changes nothing in the images
                long[] seeds = ids.subList(start, end).stream().mapToLong(id -> seed + id[1]).toArray();
                List<String> negatives = negativePrompt == null ? null : java.util.Collections.nCopies(end - start, negativePrompt);
                Tensor images = sampler.sample(flat.subList(start, end), negatives, seeds, settings,
                    (done, n) -> bar.update((long) base * steps + (long) done * (end - base), total, null));
                for (int k = 0; k < end - start; k++) {
                    long[] id = ids.get(start + k);
                    String name = String.format("%03d-%d.png", id[0], id[1]);
                    BufferedImage img = Images.toImage(images.select(0, k));
                    written.add(out.resolve(name));
                    Images.writePng(out.resolve(name), img);
                    tiles.add(img);
                    files.add(new SampleFolder.Image(name, flat.get(start + k), seed + id[1]));
                }
            }
            written.add(out.resolve("grid.png"));
            Images.writePng(out.resolve("grid.png"), Images.grid(tiles, numImages, 2));
            double secs = (System.nanoTime() - t0) / 1e9;
            String described = model.toAbsolutePath() + (loras.isEmpty() ? "" : " + LoRA " + String.join(" + ", loras));
            SampleFolder s = new SampleFolder(described, list, steps, guidance, eta, seed, numImages,
                withSampler(m.scheduler.toJson(), samplerSpec), files, Math.round(secs * 10) / 10.0);
            written.add(out.resolve(SampleFolder.FILE));
            s.write(out);
            if (json) System.out.println(s.toJson());
            else System.out.printf("%d images in %.1f s -> %s%n", files.size(), secs, out.resolve("grid.png"));
        }
        return 0;
    }

    /** The scheduler config with the sampler that was used and its options, as {@code settings.json} records them. */
    static com.fasterxml.jackson.databind.node.ObjectNode withSampler(com.fasterxml.jackson.databind.node.ObjectNode scheduler,
                                                                   org.pixelpost.sampling.Samplers.Spec spec) {
        scheduler.put("sampler", spec.name());
        com.fasterxml.jackson.databind.node.ObjectNode o = scheduler.putObject("sampler_options");
        new java.util.TreeMap<>(spec.options()).forEach(o::put);
        return scheduler;
    }

    static List<String> readPrompts(Path f) throws java.io.IOException {
        if (!Files.isRegularFile(f)) throw new java.io.IOException(f + ": no such prompts file");
        return Files.readAllLines(f).stream().map(String::strip).filter(l -> !l.isEmpty() && !l.startsWith("#")).toList();
    }
}
