// The page's two AudioWorklet processors: the microphone's samples out to the encoder, and the
// voice played from a jitter buffer (the audio thread never waits for the network).

class Capture extends AudioWorkletProcessor {
  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (channel) this.port.postMessage(channel.slice(0));
    return true;
  }
}

class Playback extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const rate = sampleRate;
    this.target = Math.round((options.processorOptions.targetMs * rate) / 1000);
    this.limit = Math.round((options.processorOptions.maxMs * rate) / 1000);
    this.chunks = [];
    this.offset = 0; // into chunks[0]
    this.buffered = 0;
    this.playing = false;
    this.played = 0;
    this.underruns = 0;
    this.dropped = 0;
    this.quanta = 0;
    this.port.onmessage = (e) => this.add(e.data);
  }

  add(samples) {
    this.chunks.push(samples);
    this.buffered += samples.length;
    // A burst past the limit: drop the oldest audio rather than let the delay grow.
    while (this.buffered > this.limit && this.chunks.length > 1) {
      const first = this.chunks.shift();
      this.buffered -= first.length - this.offset;
      this.dropped += first.length - this.offset;
      this.offset = 0;
    }
  }

  process(_inputs, outputs) {
    const out = outputs[0][0];
    if (!this.playing && this.buffered >= this.target) this.playing = true;
    let written = 0;
    if (this.playing) {
      while (written < out.length && this.chunks.length > 0) {
        const first = this.chunks[0];
        const n = Math.min(out.length - written, first.length - this.offset);
        out.set(first.subarray(this.offset, this.offset + n), written);
        written += n;
        this.offset += n;
        if (this.offset === first.length) {
          this.chunks.shift();
          this.offset = 0;
        }
      }
      this.buffered -= written;
      this.played += written;
      if (written < out.length) {
        // Starved: silence, and wait for the target again before playing on.
        this.playing = false;
        this.underruns++;
      }
    }
    out.fill(0, written);
    for (let c = 1; c < outputs[0].length; c++) outputs[0][c].set(out);
    if (++this.quanta % 8 === 0) {
      this.port.postMessage({ buffered: this.buffered, played: this.played, underruns: this.underruns, dropped: this.dropped });
    }
    return true;
  }
}

registerProcessor("kame-capture", Capture);
registerProcessor("kame-playback", Playback);
