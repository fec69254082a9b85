package org.pixelpost.data;

import static org.junit.jupiter.api.Assertions.*;

import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.pixelpost.InMemory;
import org.pixelpost.TestData;
import org.pixelpost.pipeline.TextToImageModel;

/**
 * The encoded-data cache does not depend on the thread count of the process that wrote it: processes
 * on 1 and on 2 libtorch threads write the same bytes, so a data-parallel run and a one-process run
 * train on the same latents whichever of them encoded first.
 */
@org.junit.jupiter.api.Tag("slow") // end to end: left out of the fast lane (mvn -Pfast test)
class EncodedThreadsTest {
    @TempDir Path dir;

    /** Encodes the images in {@code args[1]} (captions from TestData) with the tiny SD model into the cache {@code args[0]}. */
    public static void main(String[] args) throws Exception {
        List<Path> images = new ArrayList<>();
        for (String code : TestData.EMOJI.subList(0, 6)) images.add(Path.of(args[1]).resolve(code + ".png"));
        try (TextToImageModel m = InMemory.tinyStableDiffusion();
             EncodedSet set = EncodedSet.encode(images, TestData.CAPTIONS.subList(0, 6), m, Path.of(args[0]), EncodedSet.OnBadImage.FAIL, null)) {
            System.out.println("encoded " + set.size());
        }
    }

    static Path encodeIn(Path cache, Path images, int threads) throws Exception {
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        Path log = Files.createTempFile("encode", ".log");
        Process p = new ProcessBuilder(java, "-Dpixelpost.threads=" + threads, "-Dpixelpost.shared=" + TestData.shared(), "-cp", System.getProperty("java.class.path"),
            EncodedThreadsTest.class.getName(), cache.toString(), images.toString()).redirectErrorStream(true).redirectOutput(log.toFile()).start();
        assertTrue(p.waitFor(10, TimeUnit.MINUTES), "the encoder ended");
        assertEquals(0, p.exitValue(), Files.readString(log));
        try (var files = Files.list(cache)) {
            return files.filter(f -> f.getFileName().toString().startsWith("encoded-")).findFirst().orElseThrow();
        }
    }

    @Test
    void oneAndTwoThreadProcessesWriteTheSameCache() throws Exception {
        Path images = Files.createDirectories(dir.resolve("img"));
        TestData.emojiPngs(images, TestData.EMOJI.subList(0, 6));
        Path one = encodeIn(dir.resolve("cache-1"), images, 1), two = encodeIn(dir.resolve("cache-2"), images, 2);
        assertEquals(one.getFileName(), two.getFileName(), "the same key");
        assertEquals(-1, Files.mismatch(one, two), "the same bytes: latents, std, caption features, the empty prompt's");
    }
}
