"""The review side: report, review queue, exports to annotation tools and reviews taken back."""
