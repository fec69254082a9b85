package org.pixelpost.model.autoencoder;

import java.io.IOException;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.pixelpost.io.check.BadFileException;
import org.pixelpost.io.tensorfile.Checkpoints;
import org.pixelpost.io.tensorfile.KeyLayout;
import org.pixelpost.nn.Flops;
import org.pixelpost.nn.Layers;
import org.pixelpost.nn.Layers.Conv2d;
import org.pixelpost.nn.Layers.GroupNorm;
import org.pixelpost.nn.Layer;
import org.pixelpost.nn.Module;
import org.pixelpost.nn.Sequential;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;

/**
 * The TAESD family of tiny autoencoders: plain 3x3 conv stacks of 64 channels, 8x down and up.
 * TAESD (4 latent channels) works in SD's scaled latent space; TAEF2 (32 channels) adds a
 * GroupNorm context branch to the blocks at the latent resolution. Images are in [0, 1] and
 * latents are used as they come (scale 1, shift 0).
 */
public final class TinyAutoencoder implements Autoencoder {
    /** A known member of the family. */
    public record Variant(String name, int latentChannels, boolean midBlockGroupNorm) {
        public static final Variant TAESD = new Variant("taesd", 4, false);
        public static final Variant TAEF2 = new Variant("taef2", 32, true);
    }

    private final Variant variant;
    private final Sequential encoder, decoder;

    public TinyAutoencoder(Variant v) {
        this.variant = v;
        try (Scope s = Scope.open()) { // initialisation temporaries are freed here, the parameters kept
            this.encoder = encoder(v.latentChannels, v.midBlockGroupNorm);
            this.decoder = decoder(v.latentChannels, v.midBlockGroupNorm);
        }
        encoder.freeze();
        decoder.freeze();
    }

    /** conv -> ReLU -> conv -> ReLU -> conv plus identity, then ReLU; mid blocks first add a GroupNorm branch. */
    static final class Block extends Module implements Layer {
        private final Sequential conv, pool;

        Block(boolean groupNorm) {
            // in-place ReLUs: a convolution's or GroupNorm's output is not needed by its own backward
            conv = add("conv", new Sequential(Conv2d.k3(64, 64), Tensor::relu_, Conv2d.k3(64, 64), Tensor::relu_, Conv2d.k3(64, 64)));
            pool = groupNorm
                ? add("pool", new Sequential(Conv2d.k1(64, 256, false), new GroupNorm(4, 256, 1e-5), Tensor::relu_, Conv2d.k1(256, 64, false)))
                : null;
        }

        @Override
        public Tensor forward(Tensor x) {
            if (pool != null) {
                Tensor p = pool.forward(x);                  // [B, 64, h, w]
                p.add_(x);
                x = p;                                       // the owning handle, closed below
            }
            Tensor y = conv.forward(x);                      // [B, 64, h, w]
            y.add_(x).relu_();                               // y stays the owning handle of the result
            if (pool != null) x.close();                     // freed now, not at the scope's end
            return y;
        }
    }

    static Sequential encoder(int latentChannels, boolean gn) {
        Sequential s = new Sequential(Conv2d.k3(3, 64), new Block(false));
        for (int stage = 0; stage < 3; stage++) {
            s.append(new Conv2d(64, 64, 3, 2, 1, false));
            boolean mid = gn && stage == 2;
            for (int i = 0; i < 3; i++) s.append(new Block(mid));
        }
        return s.append(Conv2d.k3(64, latentChannels));
    }

    static Sequential decoder(int latentChannels, boolean gn) {
        Sequential s = new Sequential(x -> x.div(Tensors.s(3)).tanh().mul(Tensors.s(3)), Conv2d.k3(latentChannels, 64), Tensor::relu_);
        for (int stage = 0; stage < 3; stage++) {
            for (int i = 0; i < 3; i++) s.append(new Block(gn && stage == 0));
            s.append(Layers::upsample2x).append(new Conv2d(64, 64, 3, 1, 1, false));
        }
        return s.append(new Block(false)).append(Conv2d.k3(64, 3));
    }

    /** The decoder's forward FLOPs for one {@code h x w} latent (see {@link org.pixelpost.nn.Flops}), following {@link #decoder}. */
    @Override
    public java.util.OptionalLong decoderFlops(int h, int w) {
        return java.util.OptionalLong.of(countDecoderFlops(h, w));
    }

    private long countDecoderFlops(int h, int w) {
        long total = Flops.conv(variant.latentChannels, 64, 3, h, w);
        for (int stage = 0; stage < 3; stage++) {
            for (int i = 0; i < 3; i++) total += blockFlops(variant.midBlockGroupNorm && stage == 0, h, w);
            h *= 2;
            w *= 2;
            total += Flops.conv(64, 64, 3, h, w);
        }
        return total + blockFlops(false, h, w) + Flops.conv(64, 3, 3, h, w);
    }

    private static long blockFlops(boolean pool, long h, long w) {
        return 3 * Flops.conv(64, 64, 3, h, w) + (pool ? Flops.conv(64, 256, 1, h, w) + Flops.conv(256, 64, 1, h, w) : 0);
    }

    /**
     * Loads both halves; each file may be the original {@code .pth} or safetensors (the same file
     * for both in diffusers' layout). The variant is read off the weights: latent channels from the
     * last encoder conv, the GroupNorm branch from its keys.
     */
    public static TinyAutoencoder load(String name, Path encoderFile, Path decoderFile) throws IOException {
        try (Scope s = Scope.open()) { // the file's tensors are freed once copied into the parameters
            Map<String, Tensor> e = Checkpoints.read(encoderFile);
            Map<String, Tensor> d = encoderFile.equals(decoderFile) ? e : Checkpoints.read(decoderFile);
            Tensor out = e.containsKey("14.weight") ? e.get("14.weight") : e.get("encoder.layers.14.weight");
            if (out == null) throw new BadFileException(encoderFile, "not a TAESD-family encoder (no final conv '14.weight')");
            boolean gn = e.keySet().stream().anyMatch(k -> k.contains(".pool."));
            TinyAutoencoder ae = new TinyAutoencoder(new Variant(name, (int) out.size(0), gn));
            try {
                ae.encoder.load(remap(e, ae.encoder, "encoder"), encoderFile);
                ae.decoder.load(remap(d, ae.decoder, "decoder"), decoderFile);
            } catch (IOException | RuntimeException x) {
                ae.close();
                throw x;
            }
            return ae;
        }
    }

    /** Original keys ({@code 3.conv.0.weight}), or diffusers' AutoencoderTiny ({@code decoder.layers.2.conv.0.weight}, clamp outside the stack). */
    private static Map<String, Tensor> remap(Map<String, Tensor> stored, Module target, String half) {
        KeyLayout original = KeyLayout.rules("taesd", true, "^(\\d+\\.)", "$1");
        KeyLayout diffusers = new KeyLayout("diffusers", (k, t) -> {
            String p = half + ".layers.";
            if (!k.startsWith(p)) return null;
            String rest = k.substring(p.length());
            int dot = rest.indexOf('.');
            int i = Integer.parseInt(rest.substring(0, dot)) + (half.equals("decoder") ? 1 : 0);
            return Map.entry(i + rest.substring(dot), t);
        });
        return KeyLayout.pick(stored, target.parameters().keySet(), List.of(original, diffusers));
    }

    @Override public String name() { return variant.name; }
    @Override public int latentChannels() { return variant.latentChannels; }
    @Override public int downsampling() { return 8; }
    @Override public double scalingFactor() { return 1.0; }
    @Override public double shiftFactor() { return 0.0; }
    @Override public PixelRange nativeRange() { return PixelRange.ZERO_ONE; }
    @Override public Module encoder() { return encoder; }
    @Override public Module decoder() { return decoder; }

    @Override
    public Tensor encode(Tensor images) {
        return channelsFirst(encoder.forward(images.contiguous(torch.MemoryFormat.ChannelsLast)));
    }

    /** Channels-last all the way through (see {@link org.pixelpost.nn.Layers#conv2d}); the image comes back in the usual layout. */
    @Override
    public Tensor decode(Tensor latents) {
        return channelsFirst(decoder.forward(latents.contiguous(torch.MemoryFormat.ChannelsLast)));
    }

    /** {@code x} in the usual layout; {@code x} itself is freed at once. */
    private static Tensor channelsFirst(Tensor x) {
        Tensor y = x.contiguous(); // a new handle, even where x is already contiguous
        x.close();
        return y;
    }
}
