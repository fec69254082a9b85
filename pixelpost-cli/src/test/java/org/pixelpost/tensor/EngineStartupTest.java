package org.pixelpost.tensor;

import static org.junit.jupiter.api.Assertions.*;

import java.io.File;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/**
 * Start-up from an empty native cache, in a fresh JVM each time. Where Debian's libtorch is
 * installed (CI installs libtorch-dev), loading the bundled libtorch.so before libtorch_cpu.so is
 * extracted links the system's 1.13 copy and crashes; the engine extracts first.
 */
class EngineStartupTest {
    @Test
    void startsFromAnEmptyNativeCache(@TempDir Path dir) throws Exception {
        boolean systemTorch = Files.exists(Path.of("/usr/lib/x86_64-linux-gnu/libtorch_cpu.so"));
        System.out.println("system libtorch present: " + systemTorch);
        String java = Path.of(System.getProperty("java.home"), "bin", "java").toString();
        String cp = System.getProperty("java.class.path");
        for (int run = 0; run < 2; run++) {
            Path cache = dir.resolve("cache" + run);
            Process p = new ProcessBuilder(List.of(java, "-Dorg.bytedeco.javacpp.cachedir=" + cache, "-cp", cp,
                "org.pixelpost.cli.Main", "info", "--json"))
                .redirectErrorStream(true).start();
            String out = new String(p.getInputStream().readAllBytes());
            assertTrue(p.waitFor(120, TimeUnit.SECONDS));
            assertEquals(0, p.exitValue(), "run " + run + " crashed:\n" + out);
            assertTrue(out.contains("\"check\" : \"ok\""), out);
            assertTrue(Files.isDirectory(cache), "natives went to the fresh cache " + cache + File.separator);
        }
    }
}
