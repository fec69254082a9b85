package org.pixelpost.data;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.security.MessageDigest;
import java.util.ArrayList;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.IntConsumer;
import org.bytedeco.pytorch.Tensor;
import org.pixelpost.model.Conditioning;
import org.pixelpost.objective.Batch;
import org.bytedeco.pytorch.TensorVector;
import org.bytedeco.pytorch.global.torch;
import org.pixelpost.io.check.BadFileException;
import org.pixelpost.io.Images;
import org.pixelpost.io.tensorfile.SafeTensors;
import org.pixelpost.pipeline.TextToImageModel;
import org.pixelpost.model.text.TextEncoder;
import org.pixelpost.tensor.Engine;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;

/**
 * Images encoded once to model-space latents (and their mirror images, for random flips) and
 * captions encoded once to token features, cached on disk by content so that later runs and
 * resumed runs reuse them.
 */
public final class EncodedSet implements AutoCloseable {
    /** What to do with an image that cannot be read. */
    public enum OnBadImage { SKIP, FAIL }

    public final List<String> captions;
    public final List<Path> files;
    /** {@code [N, C, h, w]} latents (posterior means), and the latents of the horizontally mirrored images. */
    public final Tensor latents, flipped;
    /** The posterior's standard deviations of both, {@code [N, C, h, w]}; null where the autoencoder is deterministic. */
    public final Tensor std, flippedStd;
    /** The captions' conditioning, {@code N + 1} rows; row N is the empty prompt's (caption dropout). */
    private final Conditioning text;
    public final List<String> skipped;

    private EncodedSet(List<Path> files, List<String> captions, Tensor latents, Tensor flipped, Tensor std, Tensor flippedStd,
                       Conditioning captionText, Conditioning emptyText, List<String> skipped) {
        this.files = files;
        this.captions = captions;
        this.latents = latents;
        this.flipped = flipped;
        this.std = std;
        this.flippedStd = flippedStd;
        this.text = captionText.concat(emptyText);
        this.skipped = skipped;
        for (Tensor x : List.of(latents, flipped)) x.retainReference();
        text.named("").values().forEach(Tensor::retainReference);
        if (std != null) {
            std.retainReference();
            flippedStd.retainReference();
        }
    }

    /** Frees the encoded tensors now. */
    @Override
    public void close() {
        for (Tensor x : List.of(latents, flipped)) x.releaseReference();
        text.named("").values().forEach(Tensor::releaseReference);
        if (std != null) {
            std.releaseReference();
            flippedStd.releaseReference();
        }
    }

    public int size() {
        return captions.size();
    }

    /**
     * Encodes (or loads from {@code cacheDir}) every image at the model's image size into its latent
     * space, and every caption with its text encoder.
     */
    public static EncodedSet encode(List<Path> images, List<String> captions, TextToImageModel m, Path cacheDir, OnBadImage onBad,
                                    IntConsumer progress) throws IOException {
        Files.createDirectories(cacheDir);
        TextEncoder te = m.textEncoder;
        int size = m.imageSize;
        String key = digest(images, captions, m.latentSpaceKey() + "|posterior|one-thread|content|" + te.name() + "|" + te.maxTokens() + "|" + m.encoderFingerprint());
        Path cache = cacheDir.resolve("encoded-" + key + ".safetensors");
        if (Files.isRegularFile(cache)) {
            try (SafeTensors st = SafeTensors.open(cache)) {
                // the cache is keyed by content, so it may come from the same images at other paths: skipped images are known by position
                java.util.Set<Integer> skippedAt = new java.util.HashSet<>();
                for (String i : st.metadata().getOrDefault("skipped_index", "").split(",")) if (!i.isEmpty()) skippedAt.add(Integer.parseInt(i));
                List<String> skipped = new ArrayList<>();
                for (int i = 0; i < images.size(); i++) if (skippedAt.contains(i)) skipped.add(images.get(i).toString());
                // the policy holds on every run, not only the one that built the cache
                if (!skipped.isEmpty() && onBad == OnBadImage.FAIL)
                    throw new BadFileException(Path.of(skipped.get(0)), "unreadable image" + (skipped.size() > 1 ? " (and " + (skipped.size() - 1) + " more)" : "")
                        + " with --on-bad-image fail");
                for (String s : skipped) System.err.println("skipping unreadable image: " + s);
                List<Path> kept = new ArrayList<>();
                List<String> keptCaptions = new ArrayList<>();
                for (int i = 0; i < images.size(); i++)
                    if (!skippedAt.contains(i)) {
                        kept.add(images.get(i));
                        keptCaptions.add(captions.get(i));
                    }
                boolean vae = st.entries().containsKey("std");
                Map<String, Tensor> all = new LinkedHashMap<>();
                for (String k : st.entries().keySet()) all.put(k, st.load(k));
                return new EncodedSet(kept, keptCaptions, all.get("latents"), all.get("flipped"), vae ? all.get("std") : null,
                    vae ? all.get("flipped_std") : null, Conditioning.fromNamed(all, ""), Conditioning.fromNamed(all, "empty_"), skipped);
            }
        }
        List<Tensor> z = new ArrayList<>(), zf = new ArrayList<>(), sd = new ArrayList<>(), sdf = new ArrayList<>();
        List<Path> kept = new ArrayList<>();
        List<String> keptCaptions = new ArrayList<>(), skipped = new ArrayList<>(), skippedIndex = new ArrayList<>();
        Conditioning text, empty;
        java.util.concurrent.ExecutorService pool = Engine.threadPool(workers(images.size(), size), 1, "encode");
        try {
            java.util.concurrent.atomic.AtomicInteger done = new java.util.concurrent.atomic.AtomicInteger();
            List<java.util.concurrent.Future<EncodedImage>> jobs = new ArrayList<>();
            for (Path image : images)
                jobs.add(pool.submit(() -> {
                    EncodedImage r = encodeImage(m, image, size, onBad);
                    if (progress != null) synchronized (progress) { progress.accept(done.incrementAndGet()); }
                    return r;
                }));
            List<EncodedImage> encoded;
            try {
                encoded = Engine.awaitAll(jobs);
            } catch (IllegalStateException e) {
                if (e.getCause() instanceof IOException io) throw io; // an unreadable image with --on-bad-image fail, as it was
                throw e;
            }
            for (int i = 0; i < images.size(); i++) {
                EncodedImage r = encoded.get(i);
                if (r.unreadable() != null) {
                    System.err.println("skipping unreadable image: " + r.unreadable());
                    skipped.add(images.get(i).toString());
                    skippedIndex.add(Integer.toString(i));
                    continue;
                }
                z.add(r.mean());
                zf.add(r.flippedMean());
                if (r.std() != null) {
                    sd.add(r.std());
                    sdf.add(r.flippedStd());
                }
                kept.add(images.get(i));
                keptCaptions.add(captions.get(i));
            }
            if (kept.isEmpty()) throw new BadFileException(images.isEmpty() ? cacheDir : images.get(0), "no readable images");
            text = encodeCaptions(te, keptCaptions, pool);
            empty = encodeCaptions(te, List.of(""), pool);
        } finally {
            pool.shutdownNow();
        }
        Tensor latents = torch.stack(new TensorVector(z.toArray(new Tensor[0])));
        Tensor flipped = torch.stack(new TensorVector(zf.toArray(new Tensor[0])));
        Tensor std = sd.isEmpty() ? null : torch.stack(new TensorVector(sd.toArray(new Tensor[0])));
        Tensor flippedStd = sd.isEmpty() ? null : torch.stack(new TensorVector(sdf.toArray(new Tensor[0])));
        Map<String, Tensor> out = new LinkedHashMap<>();
        out.put("latents", latents);
        out.put("flipped", flipped);
        if (std != null) {
            out.put("std", std);
            out.put("flipped_std", flippedStd);
        }
        out.putAll(text.named(""));
        out.putAll(empty.named("empty_"));
        SafeTensors.write(cache, out, Map.of("skipped", String.join("\n", skipped), "skipped_index", String.join(",", skippedIndex),
            "autoencoder", m.autoencoder.name(), "text_encoder", te.name()));
        return new EncodedSet(kept, keptCaptions, latents, flipped, std, flippedStd, text, empty, skipped);
    }

    /*
     * Encoded data does not depend on the process's thread count: libtorch's kernels may split a sum
     * differently on other thread counts, so every image and every chunk of captions is encoded on a
     * pool thread that runs one libtorch thread, the images side by side. A cache written by any
     * process (rank 0 of a 2-process run on 2 threads, or a one-process run on 4) holds the same bytes.
     */

    /** Captions at a time per text-encoder call: fixed, so the batches do not depend on the pool either. */
    static final int CAPTION_CHUNK = 32;

    /** The pool's size: a thread per core, fewer where a pair of images through the encoder would not fit in half the free memory. */
    static int workers(int images, int size) {
        long perWorker = 2L * size * size * 4 * 256; // a pair of images at up to 256 floats per pixel (the widest levels' live activations)
        long byMemory = Math.max(1, Engine.freeMemory() / 2 / perWorker);
        return (int) Math.max(1, Math.min(Math.min(Engine.threads(), Math.max(1, images)), byMemory));
    }

    /** An image and its mirror image encoded (the stds null for a deterministic autoencoder), or why it could not be read. */
    private record EncodedImage(Tensor mean, Tensor flippedMean, Tensor std, Tensor flippedStd, String unreadable) {}

    private static EncodedImage encodeImage(TextToImageModel m, Path image, int size, OnBadImage onBad) throws IOException {
        Tensor x;
        try {
            x = Images.load(image, size);
        } catch (IOException e) {
            if (onBad == OnBadImage.FAIL) throw e;
            return new EncodedImage(null, null, null, null, e.getMessage());
        }
        try (var g = Tensors.noGrad(); Scope s = Scope.open()) {
            var post = m.encodePosterior(torch.stack(new TensorVector(x, x.flip(2))));       // [2, C, h, w]
            Tensor std = post.logvar() == null ? null : post.std();
            return new EncodedImage(s.keep(post.mean().select(0, 0).clone()), s.keep(post.mean().select(0, 1).clone()),
                std == null ? null : s.keep(std.select(0, 0).clone()), std == null ? null : s.keep(std.select(0, 1).clone()), null);
        }
    }

    /** Captions encoded {@link #CAPTION_CHUNK} at a time on the pool, in order, padded to the longest. */
    private static Conditioning encodeCaptions(TextEncoder te, List<String> captions, java.util.concurrent.ExecutorService pool) {
        List<java.util.concurrent.Future<Conditioning>> jobs = new ArrayList<>();
        for (int from = 0; from < captions.size(); from += CAPTION_CHUNK) {
            List<String> chunk = captions.subList(from, Math.min(captions.size(), from + CAPTION_CHUNK));
            jobs.add(pool.submit(() -> {
                try (var g = Tensors.noGrad(); Scope s = Scope.open()) {
                    return te.encode(chunk).map(s::keep);
                }
            }));
        }
        Conditioning all = null;
        for (Conditioning part : Engine.awaitAll(jobs)) all = all == null ? part : all.concat(part);
        return all;
    }

    /** Rows {@code idx} with per-row flips: latents {@code [B, C, h, w]} and their conditioning. */
    public Batch batch(long[] idx, boolean[] flip) {
        return batch(idx, flip, null, null);
    }

    /**
     * Rows {@code idx} with per-row flips, and the empty prompt in place of the caption where
     * {@code dropCaption} says so: latents {@code [B, C, h, w]} and their conditioning.
     * The latents are the posterior means, or, where {@code sampleSeeds} is given and the
     * autoencoder is a VAE, draws {@code mean + std * eps} with row k's {@code eps} from seed {@code sampleSeeds[k]}.
     */
    public Batch batch(long[] idx, boolean[] flip, boolean[] dropCaption, long[] sampleSeeds) {
        Tensor i = Tensors.fromFloats(toFloats(idx), idx.length).to(torch.ScalarType.Long);
        long[] textRows = idx.clone();
        if (dropCaption != null) for (int k = 0; k < textRows.length; k++) if (dropCaption[k]) textRows[k] = size();
        Tensor ti = Tensors.fromFloats(toFloats(textRows), idx.length).to(torch.ScalarType.Long);
        float[] f = new float[idx.length];
        for (int k = 0; k < f.length; k++) f[k] = flip != null && flip[k] ? 1 : 0;
        Tensor w = Tensors.fromFloats(f, idx.length, 1, 1, 1), keep = w.neg().add(Tensors.s(1));
        Tensor z = latents.index_select(0, i).mul(keep).add(flipped.index_select(0, i).mul(w)); // [B, C, h, w]
        if (sampleSeeds != null && std != null) {
            Tensor s = std.index_select(0, i).mul(keep).add(flippedStd.index_select(0, i).mul(w));
            Tensor[] eps = new Tensor[idx.length];
            for (int k = 0; k < idx.length; k++)
                try (org.pixelpost.tensor.Generator g = org.pixelpost.tensor.Generator.seeded(sampleSeeds[k])) {
                    eps[k] = g.randn(Tensors.shape(latents.select(0, 0)));                  // [C, h, w]
                }
            z = z.add(s.mul(torch.stack(new TensorVector(eps))));                            // a draw from the posterior
        }
        return Batch.of(z, text.rows(ti));
    }

    private static float[] toFloats(long[] v) {
        float[] f = new float[v.length];
        for (int k = 0; k < v.length; k++) f[k] = v[k];
        return f;
    }

    /**
     * A digest of the inputs by content: each image's bytes and caption, in order, and the settings.
     * Neither paths nor modification times take part, so a data folder built again (or moved) with
     * the same images finds its cache.
     */
    static String digest(List<Path> images, List<String> captions, String settings) throws IOException {
        try {
            MessageDigest md = MessageDigest.getInstance("SHA-256");
            md.update(settings.getBytes(java.nio.charset.StandardCharsets.UTF_8));
            for (int i = 0; i < images.size(); i++) {
                Path p = images.get(i);
                String content = Files.isRegularFile(p) ? HexFormat.of().formatHex(MessageDigest.getInstance("SHA-256").digest(Files.readAllBytes(p))) : "missing";
                md.update((content + "|" + captions.get(i) + "\n").getBytes(java.nio.charset.StandardCharsets.UTF_8));
            }
            return HexFormat.of().formatHex(md.digest()).substring(0, 16);
        } catch (java.security.NoSuchAlgorithmException e) {
            throw new IllegalStateException(e);
        }
    }
}
