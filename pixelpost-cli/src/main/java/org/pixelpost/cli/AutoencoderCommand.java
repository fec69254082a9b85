package org.pixelpost.cli;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import org.pixelpost.io.check.InvalidValueException;
import org.pixelpost.io.run.OutputDir;
import org.pixelpost.model.autoencoder.AutoencoderKL;
import org.pixelpost.tensor.Engine;
import org.pixelpost.train.AutoencoderTraining;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;
import picocli.CommandLine.Parameters;

@Command(name = "autoencoder", mixinStandardHelpOptions = true, subcommands = AutoencoderCommand.Train.class,
    description = "Train first-stage autoencoders (AutoencoderKL, diffusers' layout).")
final class AutoencoderCommand implements Runnable {
    @Override
    public void run() {
        throw new picocli.CommandLine.ParameterException(new picocli.CommandLine(this), "name a subcommand: train");
    }

    @Command(name = "train", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Train an AutoencoderKL on a folder of images: L1 or L2 reconstruction, a Laplacian-pyramid detail term and",
            "SD's small KL weight; no adversarial term, so reconstructions are softer than SD's VAE at the same compression.",
            "The run folder gets config.json, metrics.jsonl, checkpoints/step-N/, reconstructions.png and model/ (a diffusers",
            "AutoencoderKL folder whose scaling_factor makes the training latents unit-variance)."})
    static final class Train implements Callable<Integer> {
        @Parameters(index = "0", paramLabel = "DATA", description = "folder of PNG or JPEG images (searched recursively), or a captioned set (captions.jsonl lists the images)")
        Path data;

        @Option(names = "--out", required = true, description = "run folder") Path out;
        @Option(names = "--val-data", paramLabel = "DIR", description = "held-out images: PSNR at each checkpoint and at the end") Path valData;
        @Option(names = "--latent-channels", defaultValue = "4", description = "latent channels (default: ${DEFAULT-VALUE}, as SD's VAE)") int latentChannels;
        @Option(names = "--downsampling", defaultValue = "8", description = "spatial downsampling factor, a power of 2 (default: ${DEFAULT-VALUE})") int downsampling;
        @Option(names = "--block-out-channels", split = ",", paramLabel = "C,...",
            description = "channels per level, one per factor of 2 plus one (default: 32,64,128,128... for the factor)") List<Integer> blockOut;
        @Option(names = "--layers-per-block", defaultValue = "1", description = "resnets per encoder level (the decoder has one more) (default: ${DEFAULT-VALUE})") int layersPerBlock;
        @Option(names = "--norm-num-groups", defaultValue = "32", description = "GroupNorm groups (default: ${DEFAULT-VALUE})") int normGroups;
        @Option(names = "--no-mid-attention", description = "no self-attention in the mid blocks") boolean noMidAttention;
        @Option(names = "--image-size", defaultValue = "64", description = "images are resized and centre-cropped to SIZE x SIZE (default: ${DEFAULT-VALUE})") int imageSize;
        @Option(names = "--steps", defaultValue = "2000", description = "(default: ${DEFAULT-VALUE})") int steps;
        @Option(names = "--batch-size", defaultValue = "16", description = "(default: ${DEFAULT-VALUE})") int batchSize;
        @Option(names = "--lr", defaultValue = "4e-4", description = "AdamW learning rate (default: ${DEFAULT-VALUE})") double lr;
        @Option(names = "--warmup-steps", defaultValue = "100", description = "(default: ${DEFAULT-VALUE})") int warmup;
        @Option(names = "--loss", defaultValue = "l1", description = "reconstruction loss: l1 or l2 (default: ${DEFAULT-VALUE})") String loss;
        @Option(names = "--laplacian-weight", defaultValue = "1.0", description = "weight of the Laplacian-pyramid detail term (default: ${DEFAULT-VALUE})") double lapWeight;
        @Option(names = "--kl-weight", defaultValue = "1e-6", description = "KL weight, SD's (default: ${DEFAULT-VALUE})") double klWeight;
        @Option(names = "--grad-clip", defaultValue = "1.0", description = "gradient norm clip, 0: none (default: ${DEFAULT-VALUE})") double gradClip;
        @Option(names = "--seed", defaultValue = "0", description = "(default: ${DEFAULT-VALUE})") long seed;
        @Option(names = "--checkpoint-every", defaultValue = "500", description = "steps between checkpoints, 0: only at the end (default: ${DEFAULT-VALUE})") int checkpointEvery;
        @Option(names = "--keep-checkpoints", defaultValue = "2", description = "(default: ${DEFAULT-VALUE})") int keep;
        @Option(names = "--log-every", defaultValue = "10", description = "(default: ${DEFAULT-VALUE})") int logEvery;
        @Option(names = "--resume", paramLabel = "latest|DIR", description = "continue from a checkpoint of this run folder") String resume;
        @Option(names = "--json", description = "print one JSON object with the run's figures at the end") boolean json;

        @Override
        public Integer call() throws Exception {
            AutoencoderTraining.Config c = config();
            boolean created = OutputDir.prepare(out, "--out", OutputDir.Existing.MAY_HOLD_FILES, false);
            Engine.start();
            ProgressBar bar = new ProgressBar("autoencoder");
            AutoencoderTraining.Summary s;
            try {
                s = train(c, bar);
            } catch (IOException | RuntimeException e) {
                // a run that stopped before its first checkpoint leaves nothing behind in a folder this call made
                if (created && !Files.isDirectory(out.resolve("checkpoints"))) org.pixelpost.io.AtomicFiles.deleteTree(out);
                throw e;
            }

            if (json) {
                Map<String, Object> o = new LinkedHashMap<>();
                o.put("model", s.model().toString());
                o.put("steps", s.steps());
                o.put("seconds", s.seconds());
                o.put("steps_run", s.stepsRun());
                o.put("seconds_per_step", s.seconds() / Math.max(1, s.stepsRun()));
                o.put("scaling_factor", s.scalingFactor());
                o.put("latent_std", s.latentStd());
                o.put("val_psnr", s.valPsnr());
                o.put("compression", 3.0 * downsampling * downsampling / latentChannels);
                o.put("last", s.lastTerms());
                System.out.println(Json.write(o));
            } else {
                System.out.printf("model: %s (scaling_factor %.5f)%s%n", s.model(), s.scalingFactor(),
                    s.valPsnr() == null ? "" : String.format("; held-out PSNR %.2f dB", s.valPsnr()));
            }
            return 0;
        }

        static AutoencoderTraining.Summary train(AutoencoderTraining.Config c, ProgressBar bar) throws IOException {
            return new AutoencoderTraining(c, new AutoencoderTraining.Listener() {
                @Override public void step(long step, long total, Map<String, Double> terms) {
                    bar.update(step, total, String.format("loss %.4f rec %.4f%s", terms.getOrDefault("loss", 0.0), terms.getOrDefault("rec", 0.0),
                        terms.containsKey("val_psnr") ? String.format(" val PSNR %.2f dB", terms.get("val_psnr")) : ""));
                }

                @Override public void message(String text) {
                    System.err.println(text);
                }
            }).run();
        }

        AutoencoderTraining.Config config() {
            if (downsampling < 1 || Integer.bitCount(downsampling) != 1) throw new InvalidValueException("--downsampling", downsampling + " is not a power of 2");
            if (latentChannels < 1) throw new InvalidValueException("--latent-channels", latentChannels + " is not a positive number of channels");
            if (layersPerBlock < 1) throw new InvalidValueException("--layers-per-block", layersPerBlock + " is not a positive number of resnets");
            if (normGroups < 1) throw new InvalidValueException("--norm-num-groups", normGroups + " is not a positive number of groups");
            int levels = Integer.numberOfTrailingZeros(downsampling) + 1;
            List<Integer> ch = blockOut;
            if (ch == null) {
                ch = new ArrayList<>();
                for (int i = 0; i < levels; i++) ch.add(Math.min(128, 32 << i));
            } else if (ch.size() != levels) {
                throw new InvalidValueException("--block-out-channels", ch.size() + " levels given; --downsampling " + downsampling + " needs " + levels);
            }
            for (int v : ch) if (v < 1) throw new InvalidValueException("--block-out-channels", v + " is not a positive number of channels");
            AutoencoderKL.Config m = new AutoencoderKL.Config(3, 3, List.copyOf(ch), layersPerBlock, latentChannels, normGroups, 1.0, 0.0, !noMidAttention);
            try {
                return new AutoencoderTraining.Config(data, valData, out, m, imageSize, steps, batchSize, lr, warmup, loss, lapWeight, klWeight,
                    gradClip, seed, checkpointEvery, keep, logEvery, resume);
            } catch (InvalidValueException e) {
                throw new InvalidValueException("--" + e.key().replace('_', '-'), e.getMessage().substring(e.key().length() + 2));
            }
        }
    }
}
