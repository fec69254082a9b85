package org.pixelpost.cli;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.Callable;
import org.pixelpost.io.AtomicFiles;
import org.pixelpost.io.check.InvalidValueException;
import org.pixelpost.io.run.OutputDir;
import org.pixelpost.lora.LoraWeights;
import org.pixelpost.pipeline.StableDiffusion;
import org.pixelpost.pipeline.TextToImageModel;
import org.pixelpost.tensor.Engine;
import org.pixelpost.train.TrainRun;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

@Command(name = "lora", mixinStandardHelpOptions = true, description = "Inspect, convert and merge LoRA files.",
    subcommands = {LoraCommand.Info.class, LoraCommand.Export.class, LoraCommand.Merge.class})
final class LoraCommand implements Runnable {
    @picocli.CommandLine.Spec picocli.CommandLine.Model.CommandSpec spec;

    @Override
    public void run() {
        spec.commandLine().usage(System.out);
    }

    /** A {@code FILE[:SCALE]} argument; a run folder stands for its {@code lora.safetensors}. */
    record Spec(Path file, double scale) {
        static Spec parse(String option, String text) {
            Path whole = Path.of(text);
            if (Files.exists(whole)) return new Spec(resolve(whole), 1.0);
            int colon = text.lastIndexOf(':');
            if (colon <= 0) return new Spec(whole, 1.0);
            String scale = text.substring(colon + 1);
            double s;
            try {
                s = Double.parseDouble(scale);
            } catch (NumberFormatException e) {
                throw new InvalidValueException(option, "'" + scale + "' in '" + text + "' is not a number; write FILE or FILE:SCALE, e.g. style.safetensors:0.8");
            }
            if (!Double.isFinite(s)) throw new InvalidValueException(option, "scale " + scale + " in '" + text + "' is not a finite number");
            if (Math.abs(s) > LoraWeights.MAX_SCALE)
                throw new InvalidValueException(option, "scale " + scale + " in '" + text + "' is beyond +-" + (int) LoraWeights.MAX_SCALE
                    + " (LoRAs are applied at about -2 to 2)");
            return new Spec(resolve(Path.of(text.substring(0, colon))), s);
        }

        private static Path resolve(Path p) {
            return Files.isDirectory(p) ? p.resolve(TrainRun.LORA_FILE) : p;
        }

        @Override
        public String toString() {
            return file + (scale == 1 ? "" : ":" + scale);
        }
    }

    /** Reads every LoRA against {@code m} before any is applied, then merges them in order. */
    static List<String> mergeAll(TextToImageModel m, List<String> specs, String option) throws IOException {
        List<Spec> parsed = specs.stream().map(s -> Spec.parse(option, s)).toList();
        List<LoraWeights> read = new ArrayList<>();
        List<String> notes = new ArrayList<>();
        for (Spec s : parsed) {
            LoraWeights w = LoraWeights.read(s.file(), m);
            notes.addAll(w.notes());
            if (s.scale() < 0) notes.add("warning: " + s + ": a negative scale applies the LoRA reversed");
            read.add(w);
        }
        for (int i = 0; i < read.size(); i++) read.get(i).merge(m, parsed.get(i).scale());
        return notes;
    }

    @Command(name = "info", mixinStandardHelpOptions = true, description = "The layout, ranks, alphas, layers and metadata of a LoRA file.")
    static final class Info implements Callable<Integer> {
        @Option(names = "--lora", required = true, description = "a LoRA file (or a LoRA run folder)") String lora;
        @Option(names = "--model", required = true, description = "the base model it is read against") Path model;
        @Option(names = "--json", description = "print JSON") boolean json;

        @Override
        public Integer call() throws Exception {
            Engine.start();
            Spec s = Spec.parse("--lora", lora);
            if (s.scale() != 1) throw new InvalidValueException("--lora", "info takes no scale (" + s + ")");
            try (TextToImageModel m = TextToImageModel.load(model)) {
                LoraWeights w = LoraWeights.read(s.file(), m);
                Map<String, Object> out = new java.util.LinkedHashMap<>();
                out.put("file", s.file().toString());
                out.put("layout", w.layout());
                out.put("layers", w.updates().size());
                Map<String, Integer> byComponent = new TreeMap<>();
                w.updates().keySet().forEach(k -> byComponent.merge(k.substring(0, k.indexOf('.')), 1, Integer::sum));
                out.put("components", byComponent);
                out.put("ranks", w.updates().values().stream().map(LoraWeights.Update::rank).distinct().sorted().toList());
                out.put("alphas", w.updates().values().stream().map(LoraWeights.Update::alpha).distinct().sorted().toList());
                out.put("parameters", w.updates().values().stream().mapToLong(u -> u.down().numel() + u.up().numel()).sum());
                out.put("metadata", w.metadata());
                out.put("notes", w.notes());
                if (json) System.out.println(Json.write(out));
                else out.forEach((k, v) -> System.out.println(k + ": " + v));
            }
            return 0;
        }
    }

    @Command(name = "export", mixinStandardHelpOptions = true,
        description = {"Write a LoRA (any layout PixelPost reads) in the kohya layout (AUTOMATIC1111, ComfyUI, diffusers)",
            "or the diffusers/PEFT layout (alpha / rank folded into lora_B)."})
    static final class Export implements Callable<Integer> {
        @Option(names = "--lora", required = true, description = "a LoRA file, or a LoRA run folder") String lora;
        @Option(names = "--model", required = true, description = "the base model (names and shapes are checked against it)") Path model;
        @Option(names = "--format", defaultValue = "auto", description = "kohya, peft, or auto: the model family's (kohya for Stable Diffusion, peft for PixArt and DiTs; default: ${DEFAULT-VALUE})") String format;
        @Option(names = "--out", required = true, description = "the .safetensors file to write") Path out;
        @Option(names = "--overwrite", description = "replace --out if it exists") boolean overwrite;

        @Override
        public Integer call() throws Exception {
            if (!format.equalsIgnoreCase("auto")) org.pixelpost.lora.LoraLayout.written(format); // refused before anything is loaded
            checkOutFile(out, overwrite);
            Engine.start();
            Spec s = Spec.parse("--lora", lora);
            if (s.scale() != 1) throw new InvalidValueException("--lora", "export takes no scale (" + s + ")");
            if (ModelCommand.real(out).equals(ModelCommand.real(s.file())))
                throw new InvalidValueException("--out", out + " is the input LoRA file; write the export elsewhere");
            try (TextToImageModel m = TextToImageModel.load(model)) {
                LoraWeights w = LoraWeights.read(s.file(), m);
                w.notes().forEach(System.err::println);
                org.pixelpost.lora.LoraLayout f = org.pixelpost.lora.LoraLayout.written(format.equalsIgnoreCase("auto") ? m.family().loraFormat() : format);
                w.write(out, f);
                System.out.printf("%d layers, %s layout -> %s%n", w.updates().size(), f.name().toLowerCase(), out);
            }
            return 0;
        }
    }

    @Command(name = "merge", mixinStandardHelpOptions = true,
        description = {"Add LoRAs into a model's weights and write the merged model: a folder,",
            "or a Stable Diffusion single file when --out ends in .safetensors."})
    static final class Merge implements Callable<Integer> {
        @Option(names = "--model", required = true, description = "the base model folder or SD single file") Path model;
        @Option(names = "--lora", required = true, description = "FILE[:SCALE] (repeatable; applied in order)") List<String> loras;
        @Option(names = "--out", required = true, description = "the merged model folder, or FILE.safetensors for an SD single file") Path out;
        @Option(names = "--overwrite", description = "replace what --out holds") boolean overwrite;

        @Override
        public Integer call() throws Exception {
            boolean toFile = out.getFileName().toString().endsWith(".safetensors");
            List<Spec> specs = loras.stream().map(l -> Spec.parse("--lora", l)).toList(); // a bad scale is refused before anything is loaded
            Path in = ModelCommand.real(model), target = ModelCommand.real(out);
            if (target.startsWith(in) || in.startsWith(target))
                throw new InvalidValueException("--out", out + (target.startsWith(in) ? " is, or is inside, the input model " : " holds the input model ") + model
                    + "; write the merged model elsewhere");
            for (Spec s : specs)
                if (target.equals(ModelCommand.real(s.file())))
                    throw new InvalidValueException("--out", out + " is the LoRA file " + s + "; write the merged model elsewhere");
            if (toFile) checkOutFile(out, overwrite);
            Engine.start();
            try (TextToImageModel m = TextToImageModel.load(model)) {
                if (toFile && !m.family().hasSingleFile())
                    throw new InvalidValueException("--out", "a single file is written for Stable Diffusion models only (this is a " + m.family().displayName() + " model); give a folder");
                mergeAll(m, loras, "--lora").forEach(System.err::println);
                if (toFile) {
                    m.saveSingleFile(out);
                } else {
                    boolean created = OutputDir.prepare(out, "--out", OutputDir.Existing.MUST_BE_EMPTY, overwrite);
                    try {
                        m.save(out);
                    } catch (IOException | RuntimeException e) {
                        if (created) AtomicFiles.deleteTree(out);
                        throw e;
                    }
                }
            }
            System.out.printf("%s + %s -> %s%n", model, String.join(" + ", loras), out);
            return 0;
        }
    }

    static void checkOutFile(Path out, boolean overwrite) {
        if (Files.isDirectory(out)) throw new InvalidValueException("--out", out + " is a folder; give a .safetensors file name");
        if (!out.getFileName().toString().endsWith(".safetensors")) throw new InvalidValueException("--out", out + " must end in .safetensors");
        if (Files.exists(out) && !overwrite) throw new InvalidValueException("--out", out + " exists; pass --overwrite to replace it");
    }
}
