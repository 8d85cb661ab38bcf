"""LightningDataModules yielding ``(images in [-1, 1], int64 labels)`` batches; see ``ImageDataModule``."""

from .base import BatchKind, DataError, ImageDataModule
from .image_folder import ImageFolderDataModule
from .mnist import FashionMNISTDataModule, MNISTDataModule
from .paired import PairedDataModule
from .toy import GaussianMixtureDataModule
from .unpaired import UnpairedDataModule

__all__ = ["BatchKind", "DataError", "FashionMNISTDataModule", "GaussianMixtureDataModule", "ImageDataModule", "ImageFolderDataModule", "MNISTDataModule", "PairedDataModule", "UnpairedDataModule"]
