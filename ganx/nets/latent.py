"""What a generator of images (or 2-D points) from latent codes offers ``ganx.sample``: the base of every
noise-to-image generator, so the sampling CLI asks the generator, not its class."""

from torch import Tensor, nn


class LatentGenerator(nn.Module):
    """A generator G(z) or G(z, y). The defaults fit a generator that maps z straight to images; a style-based one
    (``ganx.nets.StyleGAN2Generator``) overrides them to interpolate and mix in its W space and to truncate."""

    # Per-layer styles that truncation and style mixing act on (StyleGAN2's ws); 0: neither applies.
    num_ws: int = 0

    def embed(self, z: Tensor) -> Tensor:
        """The codes of z in the space where samples are interpolated and mixed: z itself here."""
        return z

    def render(self, codes: Tensor, labels: Tensor | None = None, truncation: float = 1.0,
               truncation_cutoff: int | None = None) -> Tensor:
        """Outputs for ``embed``'s codes (of the classes ``labels``, for a class-conditional generator);
        ``truncation`` and ``truncation_cutoff`` need ``num_ws`` > 0."""
        if truncation != 1 or truncation_cutoff is not None:
            raise ValueError(f"{type(self).__name__} has no styles to truncate (num_ws=0).")
        return self(codes) if labels is None else self(codes, labels)

    def mix(self, codes_a: Tensor, codes_b: Tensor, coarse: int) -> Tensor:
        """Codes of every pair (a_i, b_j), row-major: the first ``coarse`` styles from a_i, the rest from b_j."""
        raise ValueError(f"{type(self).__name__} has no styles to mix (num_ws=0).")
