package org.pixelpost;

import java.util.List;
import org.bytedeco.pytorch.Tensor;
import org.pixelpost.model.autoencoder.AutoencoderKL;
import org.pixelpost.model.denoiser.DiT;
import org.pixelpost.model.text.TextEncoder;
import org.pixelpost.pipeline.TextToImageModel;
import org.pixelpost.tensor.Tensors;

/** Small models built in memory, with no files: what a library user can do from Java alone. */
public final class InMemory {
    private InMemory() {}

    /** A text encoder of the caller's own: each word hashed to a fixed pseudo-random vector, one token per word. */
    public static final class HashingTextEncoder implements TextEncoder {
        private final int dim, maxTokens;

        public HashingTextEncoder(int dim, int maxTokens) {
            this.dim = dim;
            this.maxTokens = maxTokens;
        }

        @Override public String name() { return "hashing-" + dim; }
        @Override public int dim() { return dim; }
        @Override public int maxTokens() { return maxTokens; }

        @Override
        public org.pixelpost.model.Conditioning encode(List<String> captions) {
            int b = captions.size();
            // every caption has a start token, so the empty prompt has one token too
            List<String[]> words = captions.stream().map(c -> ("<start> " + c.strip()).split("\\s+")).toList();
            int t = Math.min(maxTokens, words.stream().mapToInt(w -> w.length).max().orElse(1));
            float[] tokens = new float[b * t * dim], mask = new float[b * t];
            for (int i = 0; i < b; i++)
                for (int j = 0; j < Math.min(t, words.get(i).length); j++) {
                    java.util.Random r = new java.util.Random(words.get(i)[j].hashCode());
                    for (int k = 0; k < dim; k++) tokens[(i * t + j) * dim + k] = (float) r.nextGaussian();
                    mask[i * t + j] = 1;
                }
            Tensor m = Tensors.fromFloats(mask, b, t).to(org.bytedeco.pytorch.global.torch.ScalarType.Bool);
            return org.pixelpost.model.Conditioning.of(Tensors.fromFloats(tokens, b, t, dim), m);
        }

        @Override public void close() {}
    }

    /**
     * A tiny model in Stable Diffusion's layout: the parity fixtures' U-Net (cross-attention width 32)
     * and VAE (16x16 images to 4x8x8 latents), with a 32-wide CLIP over CLIP's own tokenizer.
     */
    public static TextToImageModel tinyStableDiffusion() throws Exception {
        java.nio.file.Path o = TestData.shared().resolve("oracle");
        org.pixelpost.tensor.Engine.seed(3);
        org.pixelpost.model.text.ClipTextModel clip = new org.pixelpost.model.text.ClipTextModel(
            new org.pixelpost.model.text.ClipTextModel.Config(49408, 32, 64, 2, 4, 77, "quick_gelu", 1e-5, 2));
        return new TextToImageModel(org.pixelpost.model.denoiser.UNet2DCondition.load(o.resolve("unet_tiny")),
            AutoencoderKL.load(o.resolve("vae_tiny")), "vae",
            new org.pixelpost.model.text.ClipTextEncoder(org.pixelpost.model.text.ClipTokenizer.embedded(), clip, 1),
            org.pixelpost.pipeline.StableDiffusion.scheduler(null), 16, 1.0);
    }

    /**
     * A tiny PixArt-alpha: the parity fixture's transformer layout (hidden 48, 2 layers, 4 heads,
     * 8x8 latents, learned variance) over the tiny T5 encoder's 32-wide features (so its weights are
     * new, seeded), the tiny VAE (16x16 images) and T5's tokenizer over transformers' test
     * sentencepiece model.
     */
    public static TextToImageModel tinyPixArt() throws Exception {
        java.nio.file.Path o = TestData.shared().resolve("oracle");
        org.pixelpost.tensor.Engine.seed(5);
        com.fasterxml.jackson.databind.JsonNode cfg = new com.fasterxml.jackson.databind.ObjectMapper().readTree(o.resolve("pixart_tiny/config.json").toFile());
        org.pixelpost.model.text.T5EncoderModel t5 = org.pixelpost.model.text.T5EncoderModel.load(o.resolve("t5_encoder_tiny"));
        DiT transformer = new DiT(DiT.pixArtConfig(cfg).withCaptionChannels(t5.config().dModel()));
        org.pixelpost.model.text.T5Tokenizer tok = org.pixelpost.model.text.T5Tokenizer.of(o.resolve("t5_tokenizer/test_sentencepiece.model"), true, 100);
        return new TextToImageModel(transformer, AutoencoderKL.load(o.resolve("vae_tiny")), "vae",
            new org.pixelpost.model.text.T5TextEncoder(tok, t5, org.pixelpost.model.text.T5Tokenizer.PIXART_MAX_LENGTH),
            org.pixelpost.pipeline.Families.byClassName("PixArtAlphaPipeline").defaultScheduler(), 16, 1.0);
    }

    /** A two-level AutoencoderKL (8x8 images to 4x4x4 latents), randomly initialised. */
    public static AutoencoderKL autoencoder() {
        return new AutoencoderKL(new AutoencoderKL.Config(3, 3, List.of(16, 16), 1, 4, 8, 1.0, 0.0, true));
    }

    /** A DiT of a few thousand parameters over {@link #autoencoder()}'s latents. */
    public static DiT.Config ditConfig(int textDim) {
        return new DiT.Config(4, 4, 4, 2, 32, 2, 2, 2.0, textDim);
    }

    /** The whole text-to-image model at 8x8 pixels: DiT, autoencoder, hashing text encoder, SD's scheduler. */
    public static TextToImageModel model(DiT.Config dit, int textDim) {
        return new TextToImageModel(new DiT(dit), autoencoder(), "in-memory", new HashingTextEncoder(textDim, 8),
            TextToImageModel.defaultScheduler(), 8, 1.0);
    }
}
