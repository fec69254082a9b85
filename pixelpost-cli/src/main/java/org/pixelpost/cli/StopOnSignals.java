package org.pixelpost.cli;

import java.util.ArrayList;
import java.util.List;
import org.pixelpost.train.Trainer;
import sun.misc.Signal;
import sun.misc.SignalHandler;

/**
 * While a training run is in its loop, SIGTERM and SIGINT (Ctrl-C) ask the trainer to stop after
 * the step in flight, which then writes a checkpoint; a second signal ends the process at once.
 * The JVM's own handlers are put back on close.
 */
final class StopOnSignals implements AutoCloseable {
    private final List<Signal> signals = new ArrayList<>();
    private final List<SignalHandler> previous = new ArrayList<>();

    void install(Trainer trainer) {
        for (String name : List.of("TERM", "INT")) {
            Signal sig = new Signal(name);
            boolean[] asked = {false};
            try {
                previous.add(Signal.handle(sig, s -> {
                    if (asked[0]) Runtime.getRuntime().halt(128 + s.getNumber());
                    asked[0] = true;
                    System.err.println("\nSIG" + name + ": stopping after this step and writing a checkpoint (send it again to quit at once)");
                    trainer.requestStop("SIG" + name);
                }));
                signals.add(sig);
            } catch (IllegalArgumentException e) {
                // the signal is not available here (or reserved by the JVM): keep its default
            }
        }
    }

    @Override
    public void close() {
        for (int i = 0; i < signals.size(); i++) Signal.handle(signals.get(i), previous.get(i));
        signals.clear();
        previous.clear();
    }
}
