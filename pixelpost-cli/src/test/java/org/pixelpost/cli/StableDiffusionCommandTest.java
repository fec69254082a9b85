package org.pixelpost.cli;

import static org.junit.jupiter.api.Assertions.*;

import com.fasterxml.jackson.databind.JsonNode;
import java.nio.file.Files;
import java.nio.file.Path;
import javax.imageio.ImageIO;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.pixelpost.InMemory;
import org.pixelpost.TestData;
import org.pixelpost.pipeline.TextToImageModel;

/** The commands on a Stable Diffusion-layout model: info, convert both ways, sample with a negative prompt, train with the pixel term. */
class StableDiffusionCommandTest {
    static String[] run(String... args) {
        return AutoencodeCommandTest.run(args);
    }

    @Test
    void infoConvertSampleAndTrain(@TempDir Path dir) throws Exception {
        Path sd = dir.resolve("sd");
        try (TextToImageModel m = InMemory.tinyStableDiffusion()) {
            m.save(sd);
        }
        String[] r = run("model", "info", sd.toString(), "--json");
        assertEquals("0", r[0], r[2]);
        JsonNode info = Json.MAPPER.readTree(r[1]);
        assertEquals("UNet2DConditionModel", info.get("components").get("denoiser").get("class").asText());
        assertEquals(792_964, info.get("components").get("denoiser").get("parameters").asLong());
        assertEquals("CLIPTextModel", info.get("components").get("text_encoder").get("class").asText());
        // a component folder and a component in its original names, read without loading
        r = run("model", "info", sd.resolve("unet").toString(), "--json");
        assertEquals("0", r[0], r[2]);
        info = Json.MAPPER.readTree(r[1]);
        assertEquals(792_964, info.get("parameters").asLong());
        assertEquals(32, info.get("config").get("cross_attention_dim").asInt());
        r = run("model", "info", sd.resolve("text_encoder").toString(), "--json");
        assertEquals("0", r[0], r[2]);
        assertEquals("CLIPTextModel", Json.MAPPER.readTree(r[1]).get("components").get("text_encoder").get("class").asText());
        r = run("model", "info", sd.resolve("vae/diffusion_pytorch_model.safetensors").toString());
        assertEquals("1", r[0], r[2]);
        assertTrue(r[2].contains("config.json") && r[2].contains("diffusion_pytorch_model.safetensors"), "a diffusers-named file needs its folder: " + r[2]);
        r = run("model", "info", "sd15", "--json");
        assertEquals("0", r[0], r[2]);
        info = Json.MAPPER.readTree(r[1]);
        assertEquals(859_520_964L, info.get("components").get("denoiser").get("parameters").asLong());
        assertEquals(83_653_863L, info.get("components").get("autoencoder").get("parameters").asLong());
        assertEquals(123_060_480L, info.get("components").get("text_encoder").get("parameters").asLong());
        // PixArt-alpha's T5 v1.1 XXL encoder, counted from its configuration without allocating its 19 GB
        r = run("model", "info", "t5-xxl");
        assertEquals("0", r[0], r[2]);
        assertTrue(r[1].contains("t5-xxl: 4,762,310,656 text encoder parameters"), r[1]);

        Path single = dir.resolve("sd.safetensors"), back = dir.resolve("back");
        assertEquals("0", run("model", "convert", "--model", sd.toString(), "--out", single.toString())[0]);
        r = run("model", "convert", "--model", single.toString(), "--configs", sd.toString(), "--out", back.toString());
        assertEquals("0", r[0], r[2]);
        assertEquals(-1, Files.mismatch(sd.resolve("unet/diffusion_pytorch_model.safetensors"), back.resolve("unet/diffusion_pytorch_model.safetensors")),
            "the U-Net's file comes back byte for byte");
        r = run("model", "convert", "--model", sd.toString(), "--out", single.toString());
        assertEquals("2", r[0], "an existing file is not replaced unasked: " + r[2]);

        Path out = dir.resolve("samples");
        r = run("sample", "--model", back.toString(), "--prompt", "a red circle", "--negative-prompt", "blurry", "--size", "64", "--steps", "3",
            "--out", out.toString(), "--json");
        assertEquals("0", r[0], r[2]);
        assertEquals(7.5, Json.MAPPER.readTree(r[1]).get("guidance").asDouble(), "Stable Diffusion's default guidance");
        assertEquals(64, ImageIO.read(out.resolve("000-0.png").toFile()).getWidth());
        assertEquals("2", run("sample", "--model", back.toString(), "--prompt", "x", "--size", "100", "--out", dir.resolve("s2").toString())[0]);

        // the pixel-decoder benchmark: the model's own VAE given as "the other decoder" gives the very same gradient
        r = run("bench", "pixel-decoder", "--model", back.toString(), "--decoder", TestData.shared().resolve("oracle/vae_tiny").toString(),
            "--draws", "2", "--json");
        assertEquals("0", r[0], r[2]);
        assertEquals(1.0, Json.MAPPER.readTree(r[1]).get("gradient_cosine").asDouble(), 1e-3);

        Path data = TestData.captionedFolder(dir.resolve("data"), TestData.EMOJI.subList(0, 2), TestData.CAPTIONS.subList(0, 2));
        r = run("train", "--init", back.toString(), "--data", data.toString(), "--out", dir.resolve("run").toString(), "--steps", "2",
            "--batch-size", "2", "--pixel-weight", "2", "--lr", "1e-4");
        assertEquals("0", r[0], r[2]);
        assertTrue(Files.isRegularFile(dir.resolve("run/model/unet/diffusion_pytorch_model.safetensors")), "the trained model is a diffusers folder again");
    }
}
