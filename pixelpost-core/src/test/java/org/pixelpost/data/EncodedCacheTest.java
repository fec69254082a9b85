package org.pixelpost.data;

import static org.junit.jupiter.api.Assertions.*;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import org.bytedeco.pytorch.Tensor;
import org.bytedeco.pytorch.global.torch;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.pixelpost.InMemory;
import org.pixelpost.TestData;
import org.pixelpost.model.text.ClipTextEncoder;
import org.pixelpost.pipeline.TextToImageModel;
import org.pixelpost.tensor.Scope;
import org.pixelpost.tensor.Tensors;

/** The encoded-data cache is keyed by the encoders' weights, not only their names: another fine-tune of the same architecture encodes anew. */
class EncodedCacheTest {
    static long files(Path dir) throws Exception {
        try (var s = Files.list(dir)) {
            return s.count();
        }
    }

    @Test
    void aTextEncoderWithOtherWeightsDoesNotReuseTheCache(@TempDir Path dir) throws Exception {
        List<Path> images = TestData.emojiPngs(Files.createDirectories(dir.resolve("img")), TestData.EMOJI.subList(0, 2));
        List<String> captions = TestData.CAPTIONS.subList(0, 2);
        Path cache = dir.resolve("cache");
        try (Scope s = Scope.open(); TextToImageModel m = InMemory.tinyStableDiffusion()) {
            Tensor first, again, changed;
            try (EncodedSet a = EncodedSet.encode(images, captions, m, cache, EncodedSet.OnBadImage.FAIL, null)) {
                first = a.batch(new long[] {0, 1}, new boolean[2]).cond().tokens().clone();
            }
            try (EncodedSet b = EncodedSet.encode(images, captions, m, cache, EncodedSet.OnBadImage.FAIL, null)) {
                again = b.batch(new long[] {0, 1}, new boolean[2]).cond().tokens().clone();
            }
            assertEquals(1, files(cache), "the same model reuses its cache");
            assertTrue(torch.equal(first, again));
            try (var g = Tensors.noGrad()) { // as a merged text-encoder LoRA would
                Tensor w = ((ClipTextEncoder) m.textEncoder).model().parameters().get("text_model.encoder.layers.0.self_attn.q_proj.weight");
                w.mul_(Tensors.s(1.5));
            }
            try (EncodedSet c = EncodedSet.encode(images, captions, m, cache, EncodedSet.OnBadImage.FAIL, null)) {
                changed = c.batch(new long[] {0, 1}, new boolean[2]).cond().tokens().clone();
            }
            assertEquals(2, files(cache), "other weights, another cache entry");
            assertFalse(torch.equal(first, changed), "the captions were encoded again with the new weights");
        }
    }

    @Test
    void theCacheIsKeyedByContentNotByPathOrTime(@TempDir Path dir) throws Exception {
        List<Path> images = TestData.emojiPngs(Files.createDirectories(dir.resolve("img")), TestData.EMOJI.subList(0, 2));
        List<String> captions = TestData.CAPTIONS.subList(0, 2);
        Path cache = dir.resolve("cache");
        // the same images in a data folder built again elsewhere, written later
        Path again = Files.createDirectories(dir.resolve("rebuilt"));
        List<Path> copies = new java.util.ArrayList<>();
        for (Path p : images) {
            Path c = again.resolve(p.getFileName());
            Files.copy(p, c);
            Files.setLastModifiedTime(c, java.nio.file.attribute.FileTime.fromMillis(Files.getLastModifiedTime(p).toMillis() + 86_400_000L));
            copies.add(c);
        }
        try (Scope s = Scope.open(); TextToImageModel m = InMemory.tinyStableDiffusion()) {
            try (EncodedSet a = EncodedSet.encode(images, captions, m, cache, EncodedSet.OnBadImage.FAIL, null)) {}
            long written = Files.getLastModifiedTime(Files.list(cache).findFirst().orElseThrow()).toMillis();
            try (EncodedSet b = EncodedSet.encode(copies, captions, m, cache, EncodedSet.OnBadImage.FAIL, null)) {}
            assertEquals(1, files(cache), "the rebuilt folder finds the cache");
            assertEquals(written, Files.getLastModifiedTime(Files.list(cache).findFirst().orElseThrow()).toMillis(), "and does not rewrite it");
            // one image with other pixels: another entry
            Files.copy(images.get(0), copies.get(1), java.nio.file.StandardCopyOption.REPLACE_EXISTING);
            try (EncodedSet c = EncodedSet.encode(copies, captions, m, cache, EncodedSet.OnBadImage.FAIL, null)) {}
            assertEquals(2, files(cache), "changed content, another cache entry");
        }
    }

    @Test
    void aSkippedImageIsKnownByItsPositionWhenTheCacheComesFromOtherPaths(@TempDir Path dir) throws Exception {
        List<String> captions = List.of("grinning face", "broken", "dog face");
        List<Path>[] sets = new List[2];
        for (int k = 0; k < 2; k++) {
            Path d = Files.createDirectories(dir.resolve("set" + k));
            List<Path> good = TestData.emojiPngs(d, TestData.EMOJI.subList(0, 2));
            Path broken = d.resolve("broken.png");
            Files.writeString(broken, "not a png");
            sets[k] = List.of(good.get(0), broken, good.get(1));
        }
        Path cache = dir.resolve("cache");
        try (Scope s = Scope.open(); TextToImageModel m = InMemory.tinyStableDiffusion()) {
            Tensor first;
            try (EncodedSet a = EncodedSet.encode(sets[0], captions, m, cache, EncodedSet.OnBadImage.SKIP, null)) {
                assertEquals(2, a.size());
                first = a.batch(new long[] {0, 1}, new boolean[2]).cond().tokens().clone();
            }
            try (EncodedSet b = EncodedSet.encode(sets[1], captions, m, cache, EncodedSet.OnBadImage.SKIP, null)) {
                assertEquals(1, files(cache), "the same content at other paths finds the cache");
                assertEquals(List.of(sets[1].get(0), sets[1].get(2)), b.files, "the kept images are this call's");
                assertTrue(torch.equal(first, b.batch(new long[] {0, 1}, new boolean[2]).cond().tokens()));
            }
            org.pixelpost.io.check.BadFileException e = assertThrows(org.pixelpost.io.check.BadFileException.class,
                () -> EncodedSet.encode(sets[1], captions, m, cache, EncodedSet.OnBadImage.FAIL, null));
            assertTrue(e.getMessage().contains(sets[1].get(1).toString()), "names this call's file: " + e.getMessage());
        }
    }
}
