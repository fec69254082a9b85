package org.pixelpost.pipeline;

import static org.junit.jupiter.api.Assertions.*;

import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.pixelpost.InMemory;
import org.pixelpost.io.check.BadFileException;
import org.pixelpost.io.tensorfile.SafeTensors;
import org.pixelpost.model.autoencoder.AutoencoderKL;
import org.pixelpost.model.denoiser.UNet2DCondition;
import org.pixelpost.model.text.ClipTextEncoder;
import org.pixelpost.model.text.ClipTextModel;
import org.pixelpost.model.text.ClipTokenizer;
import org.pixelpost.tensor.Engine;
import org.pixelpost.tensor.Generator;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;

/** Configurations read from a single file's shapes: a model of SD 1.x's family but not SD 1.5's size loads without a configs folder. */
class ShapeDetectionTest {
    @TempDir Path dir;

    /** SD 1.x's family (cross-attention 768, 8 heads, convolutional projections, 32 norm groups) at a few million parameters. */
    static TextToImageModel smallSd1() throws Exception {
        Engine.seed(4);
        UNet2DCondition.Config u = new UNet2DCondition.Config(4, 4, 64, List.of(32, 64), 1, List.of("CrossAttnDownBlock2D", "DownBlock2D"),
            List.of("UpBlock2D", "CrossAttnUpBlock2D"), List.of(8, 8), 768, 32, 1e-5, false, false, true, 0, 1, 2);
        AutoencoderKL.Config v = new AutoencoderKL.Config(3, 3, List.of(32, 64), 1, 4, 32, 0.18215, 0.0, true);
        ClipTextModel.Config c = new ClipTextModel.Config(49408, 768, 128, 1, 12, 77, "quick_gelu", 1e-5, 2);
        return new TextToImageModel(new UNet2DCondition(u), new AutoencoderKL(v), "vae", new ClipTextEncoder(ClipTokenizer.embedded(), new ClipTextModel(c), 1),
            StableDiffusion.scheduler(null), 128, 1.0);
    }

    static Tensor probe(TextToImageModel m) {
        try (Generator g = Generator.seeded(2); var ng = Tensors.noGrad()) {
            Tensor z = g.randn(1, 4, 8, 8);
            var text = m.textEncoder.encode(List.of("a red circle"));
            return m.denoiser.forward(z, Tensors.fromFloats(new float[] {300}, 1), org.pixelpost.model.Conditioning.of(text.tokens(), text.mask()));
        }
    }

    @Test
    void aSingleFileOfAnotherSizeLoadsFromItsShapesAlone() throws Exception {
        Path single = dir.resolve("small.safetensors");
        try (TextToImageModel a = smallSd1(); Scope s = Scope.open()) {
            a.saveSingleFile(single);
            Tensor ya = probe(a);
            List<ShapeDetection.Component> parts = ShapeDetection.components(single);
            assertEquals(List.of("denoiser", "autoencoder", "text_encoder"), parts.stream().map(ShapeDetection.Component::role).toList());
            assertEquals(a.denoiser.module().parameterCount(), parts.get(0).parameters());
            assertEquals(a.autoencoder.parameterCount(), parts.get(1).parameters());
            assertEquals(((ClipTextEncoder) a.textEncoder).model().parameterCount(), parts.get(2).parameters());
            try (TextToImageModel b = TextToImageModel.load(single)) {
                assertEquals(((UNet2DCondition) a.denoiser).config(), ((UNet2DCondition) b.denoiser).config(), "every U-Net setting, transformer depth 2 included");
                assertEquals(((AutoencoderKL) a.autoencoder).config(), ((AutoencoderKL) b.autoencoder).config());
                assertEquals(((ClipTextEncoder) a.textEncoder).model().config(), ((ClipTextEncoder) b.textEncoder).model().config());
                assertTrue(torch.equal(ya, probe(b)), "and computes what the model written computes");
            }
        }
    }

    @Test
    void componentFoldersAndFilesAreDescribedWithoutLoading() throws Exception {
        Path folder = dir.resolve("model");
        try (TextToImageModel a = smallSd1()) {
            a.save(folder);
            a.saveSingleFile(dir.resolve("small.safetensors"));
            for (String c : List.of("unet", "vae", "text_encoder")) {
                ShapeDetection.Component part = ShapeDetection.components(folder.resolve(c)).get(0);
                long expected = switch (c) {
                    case "unet" -> a.denoiser.module().parameterCount();
                    case "vae" -> a.autoencoder.parameterCount();
                    default -> ((ClipTextEncoder) a.textEncoder).model().parameterCount();
                };
                assertEquals(expected, part.parameters(), c);
            }
        }
        // one component in its original names, as community VAE and U-Net files come
        try (Scope s = Scope.open()) {
            Map<String, Tensor> all = SafeTensors.read(dir.resolve("small.safetensors")), vae = new java.util.LinkedHashMap<>();
            all.forEach((k, t) -> {
                if (k.startsWith(ShapeDetection.VAE)) vae.put(k.substring(ShapeDetection.VAE.length()), t);
            });
            SafeTensors.write(dir.resolve("vae.safetensors"), vae);
            ShapeDetection.Component part = ShapeDetection.components(dir.resolve("vae.safetensors")).get(0);
            assertEquals("AutoencoderKL", part.className());
            assertEquals(List.of(32, 64), new com.fasterxml.jackson.databind.ObjectMapper().convertValue(part.config().get("block_out_channels"), List.class));
        }
    }

    @Test
    void whatTheShapesDoNotFixIsRefusedByName() throws Exception {
        // the parity U-Net has cross-attention width 32: no SD family fixes its heads
        Path single = dir.resolve("tiny.safetensors");
        try (TextToImageModel m = InMemory.tinyStableDiffusion()) {
            m.saveSingleFile(single);
        }
        BadFileException e = assertThrows(BadFileException.class, () -> TextToImageModel.load(single));
        assertTrue(e.getMessage().contains("attention heads") && e.getMessage().contains("--configs") && e.getMessage().contains(single.toString()), e.getMessage());
        e = assertThrows(BadFileException.class, () -> ShapeDetection.components(single));
        assertTrue(e.getMessage().contains("attention heads"), e.getMessage());
        // a file of something else says what it found
        try (Scope s = Scope.open()) {
            SafeTensors.write(dir.resolve("other.safetensors"), Map.of("foo.weight", torch.zeros(2)));
        }
        e = assertThrows(BadFileException.class, () -> ShapeDetection.components(dir.resolve("other.safetensors")));
        assertTrue(e.getMessage().contains("foo.weight"), e.getMessage());
    }
}
