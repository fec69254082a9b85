package org.pixelpost.cli;

import java.awt.image.BufferedImage;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import org.bytedeco.pytorch.Tensor;
import org.pixelpost.io.Images;
import org.pixelpost.io.check.InvalidValueException;
import org.pixelpost.io.run.OutputDir;
import org.pixelpost.model.autoencoder.Autoencoder;
import org.pixelpost.model.autoencoder.Autoencoders;
import org.pixelpost.tensor.Engine;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

@Command(name = "autoencode", mixinStandardHelpOptions = true,
    description = {"Round-trip images through an autoencoder; print PSNR, write reconstructions and a grid.",
        "The grid pairs each original with its reconstruction."})
final class AutoencodeCommand implements Callable<Integer> {
    @Option(names = "--autoencoder", defaultValue = "taef2", description = "taef2, taesd, or a path (default: ${DEFAULT-VALUE})")
    String autoencoder;

    @Option(names = "--out", required = true, description = "output folder")
    Path out;

    @Option(names = "--size", defaultValue = "64", description = "images are resized and centre-cropped to SIZE x SIZE (default: ${DEFAULT-VALUE})")
    int size;

    @Option(names = "--json", description = "print one JSON object instead of text")
    boolean json;

    @Parameters(arity = "1..*", paramLabel = "IMAGE|DIR", description = "PNG or JPEG files, or folders of them (e.g. held-out images)")
    List<Path> images;

    @Override
    public Integer call() throws Exception {
        if (size <= 0 || size % 8 != 0) throw new InvalidValueException("--size", size + " is not a positive multiple of 8");
        OutputDir.prepare(out, "--out", OutputDir.Existing.MAY_HOLD_FILES, false);
        Engine.start();
        Autoencoder ae = Autoencoders.load(autoencoder);
        List<Map<String, Object>> results = new ArrayList<>(), errors = new ArrayList<>();
        List<BufferedImage> tiles = new ArrayList<>();
        double sum = 0;
        for (Path file : expand(images)) {
            try (Scope s = Scope.open(); var g = Tensors.noGrad()) {
                Tensor x = Images.load(file, size);
                Tensor y = Tensors.clamp(ae.decode(ae.encode(x.unsqueeze(0))), 0, 1).squeeze(0);
                double psnr = Images.psnr(x, y);
                String stem = file.getFileName().toString().replaceFirst("\\.[^.]+$", "");
                Images.writePng(out.resolve(stem + ".recon.png"), y);
                tiles.add(Images.toImage(x));
                tiles.add(Images.toImage(y));
                Map<String, Object> r = new LinkedHashMap<>();
                r.put("file", file.toString());
                r.put("psnr", round(psnr));
                results.add(r);
                sum += psnr;
                if (!json) System.out.printf("%-40s %6.2f dB%n", file, psnr);
            } catch (Exception | OutOfMemoryError e) {
                // a bad image is reported by name; the others still go through
                errors.add(Map.of("file", file.toString(), "error", Errors.describe(e)));
                System.err.println("error: " + Errors.describe(e));
            }
        }
        Double mean = results.isEmpty() ? null : round(sum / results.size());
        if (!tiles.isEmpty()) Images.writePng(out.resolve("grid.png"), Images.grid(tiles, 8, 2));
        if (json) {
            Map<String, Object> o = new LinkedHashMap<>();
            o.put("autoencoder", ae.name());
            o.put("size", size);
            o.put("images", results);
            o.put("mean_psnr", mean);
            o.put("errors", errors);
            System.out.println(Json.write(o));
        } else if (mean != null) {
            System.out.printf("mean PSNR %.2f dB over %d images (%s, %dx%d); grid: %s%n", mean, results.size(), ae.name(), size, size, out.resolve("grid.png"));
        }
        return errors.isEmpty() ? 0 : 1;
    }

    /** Files as given; a folder as the images its {@code captions.jsonl} lists, or else the PNG and JPEG files in it, sorted. */
    static List<Path> expand(List<Path> args) throws java.io.IOException {
        List<Path> out = new ArrayList<>();
        for (Path a : args) {
            if (!Files.isDirectory(a)) {
                out.add(a);
                continue;
            }
            List<Path> found = org.pixelpost.data.ImageCaptionSet.imageFiles(a, false).stream()
                .filter(p -> !p.getFileName().toString().endsWith(".recon.png")).toList();
            if (found.isEmpty()) throw new InvalidValueException("IMAGE", a + " is a folder without PNG or JPEG images");
            out.addAll(found);
        }
        return out;
    }

    private static double round(double v) {
        return Math.round(v * 100) / 100.0;
    }
}
