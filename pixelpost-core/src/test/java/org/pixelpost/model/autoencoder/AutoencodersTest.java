package org.pixelpost.model.autoencoder;

import static org.junit.jupiter.api.Assertions.*;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.pixelpost.TestData;

class AutoencodersTest {
    @Test
    void pinnedChecksumsMatchTheOriginals() throws IOException {
        for (Autoencoders.Pinned p : Autoencoders.KNOWN.get("taef2"))
            assertEquals(p.sha256(), Autoencoders.sha256(TestData.taef2().resolve(p.file())), p.file());
    }

    @Test
    void resolvesFromTheWeightsFolderFirst(@TempDir Path cache) throws IOException {
        Path root = TestData.shared().resolve("weights");
        assertEquals(root.resolve("taef2"), Autoencoders.resolve("taef2", root, cache));
    }

    @Test
    void resolvesFromTheCacheAndLoadsAFolder(@TempDir Path cache) throws IOException {
        Path d = Files.createDirectories(cache.resolve("taef2"));
        Files.copy(TestData.taef2().resolve("taef2_encoder.safetensors"), d.resolve("taef2_encoder.safetensors"));
        Files.copy(TestData.taef2().resolve("taef2_decoder.pth"), d.resolve("taef2_decoder.pth"));
        assertEquals(d, Autoencoders.resolve("taef2", null, cache));
        Autoencoder ae = Autoencoders.load(d.toString());
        assertEquals(32, ae.latentChannels());
        assertEquals("taef2", ae.name());
    }

    @Test
    void missingWeightsSayWhatWhereAndHow(@TempDir Path empty) {
        IOException e = assertThrows(IOException.class, () -> Autoencoders.resolve("taesd", empty.resolve("w"), empty.resolve("c")));
        String m = e.getMessage();
        assertTrue(m.contains("taesd_encoder.pth"), m);
        assertTrue(m.contains(empty.resolve("w").resolve("taesd").toString()) && m.contains(empty.resolve("c").resolve("taesd").toString()), m);
        assertTrue(m.contains("to supply it"), m);
        IOException u = assertThrows(IOException.class, () -> Autoencoders.load("no-such-autoencoder"));
        assertTrue(u.getMessage().contains("unknown autoencoder 'no-such-autoencoder'"), u.getMessage());
    }
}
